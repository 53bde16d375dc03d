"""Name a policy on the command line: a policy file, or a kind built on another policy.

``megatron`` is Megatron-LM's static CP as its users run it (token packing, no cost
balancing) at the smallest degree dividing N that fits the workload's longest sequence;
``static`` is fcp-tune's own cost-balanced static planner at that degree; ``megatron:D`` /
``static:D`` fix the degree; ``mcore-dynamic`` is Megatron-Core's dynamic CP
(``BalancedCPScheduler``), ``pow2`` fcp-tune's cost-balanced power-of-two planner; ``adaptive`` is the
per-batch FCP algorithm. Built kinds take world size, token
budget and attention scheme from the base policy.
"""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

from fcp_tune.errors import FcpTuneError
from fcp_tune.policy import Policy, load_policy, min_degree_for
from fcp_tune.policy_kinds import pad_to_multiple, thd_pad_multiple
from fcp_tune.workload import Workload, load_workload

BUILT_KINDS = ("megatron", "static", "mcore-dynamic", "pow2", "adaptive")
DEGREE_KINDS = ("megatron", "static")  # built kinds that take an optional degree, KIND:D


def default_policy_path() -> Path:
    """The bundled default policy (adaptive FCP on 4 local ranks)."""
    return Path(str(resources.files("fcp_tune") / "data" / "default_policy.yaml"))


def default_workload_path() -> Path:
    """The bundled default workload (a log-normal long tail sized for a CPU run)."""
    return Path(str(resources.files("fcp_tune") / "data" / "default_workload.yaml"))


def load_default_workload() -> Workload:
    return load_workload(str(default_workload_path()))


def dividing_degree(world_size: int, token_budget: int, longest: int, padded: bool = False) -> int | None:
    """The smallest degree that divides ``world_size`` and holds a ``longest``-token sequence
    (``None`` if none does); with ``padded``, after TransformerEngine's THD padding
    (:func:`~fcp_tune.policy_kinds.thd_pad_multiple`), as the ``megatron`` kind pads.

    Megatron-LM needs the world size divisible by the CP size (DP = N / CP), so this is the
    degree a user would run.
    """
    for degree in range(min_degree_for(longest, token_budget), world_size + 1):
        if world_size % degree:
            continue
        if not padded or int(pad_to_multiple([longest], thd_pad_multiple(degree))[0]) <= degree * token_budget:
            return degree
    return None


def smallest_static_degree(base: Policy, workload: Workload, padded: bool = False) -> int:
    """:func:`dividing_degree` for the workload's longest sequence; an error when none fits."""
    longest = max(workload.seqlens)
    degree = dividing_degree(base.world_size, base.token_budget, longest, padded)
    if degree is None:
        raise FcpTuneError(
            f"the longest sequence ({longest} tokens) does not fit {base.world_size} ranks x "
            f"{base.token_budget} tokens"
        )
    return degree


def resolve_policy(spec: str, base: Policy | None, workload: Workload) -> Policy:
    """A policy from ``spec``: a file path, or ``megatron[:D]``, ``static[:D]``, ``mcore-dynamic``,
    ``pow2``, ``adaptive`` built on ``base``."""
    name, _, arg = spec.partition(":")
    if name in BUILT_KINDS and not Path(spec).is_file():
        if base is None:
            raise FcpTuneError(f"policy {spec!r} needs a base policy for world size and token budget")
        common = dict(world_size=base.world_size, token_budget=base.token_budget, scheme=base.scheme)
        if name in DEGREE_KINDS:
            if arg:
                try:
                    degree = int(arg)
                except ValueError:
                    raise FcpTuneError(f"{name} degree must be an integer, got {arg!r}") from None
            else:
                degree = smallest_static_degree(base, workload, padded=name == "megatron")
            return Policy(kind=name, degree=degree, **common)
        if arg:
            raise FcpTuneError(f"policy {name!r} takes no argument, got {spec!r}")
        return Policy(kind=name, **common)
    if not Path(spec).exists():
        raise FcpTuneError(f"{spec}: no such policy file (or one of: megatron[:D], static[:D], mcore-dynamic, pow2, adaptive)")
    return load_policy(spec)


def fit_world(policy: Policy, world_size: int | None) -> Policy:
    """The policy at ``world_size`` ranks (its own when None)."""
    if world_size is None or world_size == policy.world_size:
        return policy
    return policy.with_world_size(world_size)


def scheme_override(policy: Policy, scheme: str | None) -> Policy:
    return policy if scheme is None else replace(policy, scheme=scheme)


def resolve_policies(
    policy: str | None, compare: list[str], nproc: int | None, scheme: str | None, workload: Workload
) -> tuple[tuple[str, Policy], ...]:
    """The policy under test (default: the bundled one) at ``nproc`` ranks, then the named baselines.

    Names: the policy's kind for the default, a file's stem, or the spec itself for a
    baseline (``megatron``, ``static``, ``static:3``, ``pow2``, ...; a repeated name gets ``#i``).
    """
    default = load_policy(default_policy_path())
    main = resolve_policy(policy, default, workload) if policy else default
    main = scheme_override(fit_world(main, nproc), scheme)
    out = [(main.kind if policy is None else Path(policy).stem, main)]
    for spec in compare:
        p = fit_world(resolve_policy(spec, main, workload), main.world_size)
        name = spec if spec not in [n for n, _ in out] else f"{spec}#{len(out)}"
        out.append((name, p))
    longest = max(workload.seqlens)
    for name, p in out:  # fail here, in one line, rather than inside every rank
        try:
            p.degree_for(longest)
        except ValueError as exc:
            raise FcpTuneError(f"policy {name}: {exc}") from None
    return tuple(out)
