"""Policies named on the command line, and the baselines every comparison scores.

A spec is a policy file, or a kind built on a base policy (its world size, token budget
and scheme): the kinds whose fields all have a command-line form
(:data:`~fcp_tune.policy.kinds.SPEC_KINDS`: ``megatron[:D]``, ``static[:D]``, ``pow2``,
``adaptive``). ``megatron`` is Megatron-LM's static CP as its users run it at the smallest
degree dividing N that fits the workload's longest sequence; ``static`` is fcp-tune's own
cost-balanced static planner at that degree; ``KIND:D`` fixes the degree. The baselines
(:func:`baseline_policies`) come from each kind's ``baselines`` rule.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Sequence

from fcp_tune.errors import FcpTuneError
from fcp_tune.policy.core import Policy, load_policy
from fcp_tune.policy.degrees import smallest_dividing_degree
from fcp_tune.policy.kinds import KINDS, SPEC_KINDS, spec_help
from fcp_tune.workload import Workload


def default_policy_path() -> Path:
    """The bundled default policy (adaptive FCP on 2 local ranks, one per core of a 2-core machine)."""
    return Path(str(resources.files("fcp_tune") / "data" / "default_policy.yaml"))


def is_kind_spec(spec: str) -> bool:
    """Whether ``spec`` names a kind (``KIND`` or ``KIND:ARG``) rather than a policy file."""
    return spec.partition(":")[0] in SPEC_KINDS and not Path(spec).is_file()


def spec_policy(spec: str, world_size: int, token_budget: int, scheme: str, longest: int) -> Policy:
    """The policy ``KIND[:ARG]`` at ``world_size`` x ``token_budget``; ``longest`` sets default degrees."""
    name, _, arg = spec.partition(":")
    rule = KINDS[name]
    if arg and not rule.fields:
        raise FcpTuneError(f"policy {name!r} takes no argument, got {spec!r}")
    values: dict = {}
    for f in rule.fields:
        values.update(f.from_spec(arg, rule, world_size, token_budget, longest))
    return Policy(kind=name, world_size=world_size, token_budget=token_budget, scheme=scheme, **values)


def resolve_policy(spec: str, base: Policy | None, workload: Workload) -> Policy:
    """A policy from ``spec``: a file path, or a kind (``megatron[:D]``, ``static[:D]``, ``pow2``,
    ``adaptive``) built on ``base``."""
    if is_kind_spec(spec):
        if base is None:
            raise FcpTuneError(f"policy {spec!r} needs a base policy for world size and token budget")
        return spec_policy(spec, base.world_size, base.token_budget, base.scheme, max(workload.seqlens))
    if not Path(spec).exists():
        raise FcpTuneError(f"{spec}: no such policy file (or one of: {spec_help()})")
    return load_policy(spec)


def smallest_static_degree(base: Policy, workload: Workload, padded: bool = False) -> int:
    """:func:`~fcp_tune.policy.degrees.smallest_dividing_degree` for the workload's longest sequence
    (``padded``: after ``megatron``'s THD padding)."""
    return smallest_dividing_degree(base.world_size, base.token_budget, max(workload.seqlens), padded)


def baseline_policies(world_size: int, token_budget: int, scheme: str, max_len: int) -> list[tuple[str, Policy]]:
    """Every kind's baselines, in registry order: ``megatron:D`` at every degree a user can run
    (on Megatron-LM's default ring), ``static:D`` at every feasible degree dividing N,
    ``mcore-dynamic`` (ring), ``adaptive``; fcp-tune's own kinds on ``scheme``."""
    common = dict(world_size=world_size, token_budget=token_budget, scheme=scheme)
    return [
        (name, Policy(kind=kind, **{**common, **values}))
        for kind, rule in KINDS.items()
        for name, values in rule.baselines(rule, world_size, token_budget, max_len)
    ]


def fit_world(policy: Policy, world_size: int | None) -> Policy:
    """The policy at ``world_size`` ranks (its own when None)."""
    if world_size is None or world_size == policy.world_size:
        return policy
    return policy.with_world_size(world_size)


def scheme_override(policy: Policy, scheme: str | None) -> Policy:
    return policy if scheme is None else replace(policy, scheme=scheme)


def document_cap(world_size: int, token_budget: int) -> int:
    """The longest document a world can hold: ``world_size * token_budget`` tokens.

    ``run``, ``search``, ``simulate`` and ``report`` split longer documents into pieces of
    this length (as a training context length would) unless ``--max-len`` says otherwise,
    so a policy searched for a workload runs on the same sequences.
    """
    return world_size * token_budget


def resolve_policies(
    policy: str | None, compare: list[str], nproc: int | None, scheme: str | None, workload: Workload,
    token_budget: int | None = None,
) -> tuple[tuple[str, Policy], ...]:
    """The policy under test (default: the bundled one) at ``nproc`` ranks (and ``token_budget``
    when given), then the named baselines built on it.

    Names: the policy's kind for the default, a file's stem, or the spec itself for a
    baseline (``megatron``, ``static``, ``static:3``, ``pow2``, ...; a repeated name gets ``#i``).
    """
    default = load_policy(default_policy_path())
    main = resolve_policy(policy, default, workload) if policy else default
    main = scheme_override(fit_world(main, nproc), scheme)
    if token_budget is not None and token_budget != main.token_budget:
        main = replace(main, token_budget=token_budget)
    out = [(main.kind if policy is None else Path(policy).stem, main)]
    for spec in compare:
        p = fit_world(resolve_policy(spec, main, workload), main.world_size)
        name = spec if spec not in [n for n, _ in out] else f"{spec}#{len(out)}"
        out.append((name, p))
    check_fits(out, workload)  # fail here, in one line, rather than inside every rank
    return tuple(out)


def check_fits(policies: Sequence[tuple[str, Policy]], workload: Workload) -> None:
    """The one check that every policy can place the workload's longest sequence (its degree
    rule gives it a degree within the world); run, validate, search and simulate all use it."""
    longest = max(workload.seqlens)
    for name, p in policies:
        try:
            p.degree_for(longest)
        except ValueError as exc:
            raise FcpTuneError(f"policy {name}: {exc}") from None
