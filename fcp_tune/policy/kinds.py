"""Policy kinds: one registry entry per kind, with everything that differs between kinds.

Each :class:`Kind` says how a policy of that kind picks a sequence's degree (``wanted``,
vectorised over a batch), which degrees it can ever give (``possible``, for the
communicators to create), which fields it takes (:mod:`fcp_tune.policy.fields`: each
parses, checks and writes itself), which baselines it contributes to every comparison
(``baselines``), and a few flags read by the generic code (:meth:`Policy.degrees_for
<fcp_tune.policy.Policy.degrees_for>`, :meth:`Plan.validate <fcp_tune.planner.Plan.validate>`,
:func:`~fcp_tune.planner.candidate_ranges`). Its planner is the function of the same name
in :data:`fcp_tune.planner.api.PLANNERS` (the planner layer sits above this one, so the
entry cannot import it without a cycle).

Adding a kind: one :class:`Kind` entry in :data:`KINDS`, a new :class:`~fcp_tune.policy.fields.Field`
if it takes a field no kind has yet, and its planner module plus its line in ``PLANNERS``
(a test checks the two registries name the same kinds). The CLI's kind names, the spec
grammar (``KIND[:D]``) and the baselines are derived from this registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import numpy as np

from fcp_tune.policy.degrees import (
    ceil_pow2,
    megatron_degrees,
    min_degree_for,
    pad_to_multiple,
    thd_pad_multiple,
)
from fcp_tune.policy.fields import DEGREE, THRESHOLDS, Field

if TYPE_CHECKING:
    from fcp_tune.policy.core import Policy

WantedFn = Callable[["Policy", np.ndarray, np.ndarray], np.ndarray]
PossibleFn = Callable[["Policy", int, int], Iterable[int]]
# (kind, world_size, token_budget, longest sequence) -> [(row name, field values)]
BaselinesFn = Callable[["Kind", int, int, int], list[tuple[str, dict[str, Any]]]]
# The attention scheme Megatron-LM's users run: --cp-comm-type p2p (its default): ring.
MEGATRON_SCHEME = "ring"
# The largest CP degree the tuned Megatron sweep tries (8 nodes of 8 GPUs). Larger degrees give
# each rank under 1/64 of a sequence: slower in every row measured (docs/BENCHMARKS.md), and
# pricing a ring of d ranks costs d^2 blocks per sequence length.
MEGATRON_SWEEP_MAX = 64


def _itself(rule: "Kind", world_size: int, token_budget: int, longest: int) -> list[tuple[str, dict[str, Any]]]:
    return [(rule.name, {})]


@dataclass(frozen=True)
class Kind:
    """One policy kind.

    ``wanted(policy, lengths, mins)``: the kind's degree per sequence before the memory
    minimum ``mins`` is applied. ``possible(policy, top, max_min)``: every degree it can give
    a length in ``1..top`` (``max_min``: the largest memory minimum there), before the
    world-size cut. ``fields``: the kind-specific fields it takes. ``baselines``: the
    policies of this kind every comparison scores (none for a kind that is searched, not
    run as is). ``raise_to_min``: a degree below the memory minimum is raised to it (else
    such a sequence is an error, as it is for Megatron-LM). ``exact``: groups have exactly
    the policy's degree; ``aligned``: degree ``d`` only at multiples of ``d`` (else any
    contiguous range). ``thd_padding``: every sequence is padded to a multiple of
    ``2 * degree`` (TransformerEngine's THD format) before it is planned and costed;
    ``world_padding``: to a multiple of ``2 * world_size`` (Megatron-Core hybrid CP's dp x cp x 2).
    """

    name: str
    summary: str
    wanted: WantedFn
    possible: PossibleFn
    fields: tuple[Field, ...] = ()
    baselines: BaselinesFn = _itself
    raise_to_min: bool = True
    exact: bool = False
    aligned: bool = True
    pow2: bool = False
    degree_divides_world: bool = False
    thd_padding: bool = False
    world_padding: bool = False

    @property
    def from_spec(self) -> bool:
        """Whether the command line can build this kind from its name (every field has a spec form)."""
        return all(f.spec_arg is not None for f in self.fields)

    @property
    def spec(self) -> str:
        """Its command-line form, e.g. ``static[:D]`` or ``pow2``."""
        return self.name + "".join(f"[:{f.spec_arg}]" for f in self.fields)

    def pad_multiple(self, policy: "Policy") -> int:
        """Every sequence is padded to a multiple of this before it is planned and costed (1: none)."""
        if self.world_padding:
            return 2 * policy.world_size
        return thd_pad_multiple(policy.degree) if self.thd_padding else 1  # type: ignore[arg-type]

    def padded(self, policy: "Policy", lengths: Iterable[int] | np.ndarray) -> np.ndarray:
        """The lengths this kind computes for ``lengths`` (after its padding rule)."""
        return pad_to_multiple(lengths, self.pad_multiple(policy))


def _fixed(policy: "Policy", lengths: np.ndarray, mins: np.ndarray) -> np.ndarray:
    return np.full(len(lengths), int(policy.degree), dtype=np.int64)  # type: ignore[arg-type]


def _pow2(policy: "Policy", lengths: np.ndarray, mins: np.ndarray) -> np.ndarray:
    if mins.size == 0 or mins.max() <= 1:
        return mins.copy()
    return np.array([ceil_pow2(x) for x in mins.tolist()], dtype=np.int64)


def _lookup(policy: "Policy", lengths: np.ndarray, mins: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(np.asarray(policy.boundaries, dtype=np.int64), lengths, side="left")
    return np.asarray(policy.degrees, dtype=np.int64)[idx]


def _minimum(policy: "Policy", lengths: np.ndarray, mins: np.ndarray) -> np.ndarray:
    return mins.copy()


def _possible_static(policy: "Policy", top: int, max_min: int) -> Iterable[int]:
    d = int(policy.degree)  # type: ignore[arg-type]
    return [d, *range(d + 1, max_min + 1)]


def _possible_pow2(policy: "Policy", top: int, max_min: int) -> Iterable[int]:
    return {ceil_pow2(m) for m in range(1, max_min + 1)}


def _possible_thresholds(policy: "Policy", top: int, max_min: int) -> Iterable[int]:
    b, out = policy.token_budget, set()
    lows, highs = (0,) + policy.boundaries, policy.boundaries + (top,)
    for deg, lo, hi in zip(policy.degrees, lows, highs):
        if lo >= top:
            break
        m_lo, m_hi = min_degree_for(lo + 1, b), min_degree_for(min(hi, top), b)
        out.update(max(deg, m) for m in range(m_lo, m_hi + 1))
    return out


def _possible_megatron(policy: "Policy", top: int, max_min: int) -> Iterable[int]:
    return [int(policy.degree)]  # type: ignore[arg-type]


def _possible_any(policy: "Policy", top: int, max_min: int) -> Iterable[int]:
    return range(1, max_min + 1)


def _megatron_baseline(rule: Kind, world_size: int, token_budget: int, longest: int) -> list[tuple[str, dict[str, Any]]]:
    """Megatron-LM at every degree a user sweeping ``--context-parallel-size`` can run (dividing N,
    its ``2 * cp`` padding of the longest sequence fitting, up to :data:`MEGATRON_SWEEP_MAX`), on
    Megatron-LM's default p2p ring: the fastest is "megatron tuned", the smallest beside it."""
    return [(f"{rule.name}:{d}", {"degree": d, "scheme": MEGATRON_SCHEME})
            for d in megatron_degrees(world_size, token_budget, longest, MEGATRON_SWEEP_MAX)]


def _mcore_baseline(rule: Kind, world_size: int, token_budget: int, longest: int) -> list[tuple[str, dict[str, Any]]]:
    return [(rule.name, {"scheme": MEGATRON_SCHEME})]  # Megatron-Core's dynamic CP, on its default p2p ring


def _possible_mcore(policy: "Policy", top: int, max_min: int) -> Iterable[int]:
    # Megatron-Core creates a group for every power of two below N and the whole DP x CP group
    # (parallel_state.create_hybrid_dp_cp_groups); fill_empty_gpus may grow a group to either.
    n = policy.world_size
    return {1 << k for k in range(n.bit_length())} | {n}


def _static_baselines(rule: Kind, world_size: int, token_budget: int, longest: int) -> list[tuple[str, dict[str, Any]]]:
    """Every feasible degree dividing N (Megatron-LM needs DP = N / CP); the best is "best static"."""
    need = min_degree_for(longest, token_budget)
    return [(f"{rule.name}:{d}", {"degree": d}) for d in range(need, world_size + 1) if world_size % d == 0]


KINDS: Mapping[str, Kind] = MappingProxyType({
    k.name: k
    for k in (
        Kind(
            "megatron", "Megatron-LM static CP: one degree, DP = N / CP, first-fit packing by tokens",
            _fixed, _possible_megatron, fields=(DEGREE,), baselines=_megatron_baseline,
            raise_to_min=False, exact=True, degree_divides_world=True, thd_padding=True,
        ),
        Kind(
            "static", "fcp-tune's cost-balanced static planner: one degree, LPT micro-batches",
            _fixed, _possible_static, fields=(DEGREE,), baselines=_static_baselines, exact=True,
        ),
        Kind(
            "mcore-dynamic", "Megatron-Core dynamic CP (BalancedCPScheduler): power-of-two groups by L^2/cp load",
            _pow2, _possible_mcore, baselines=_mcore_baseline, pow2=True, world_padding=True,
        ),
        Kind(
            "pow2", "power-of-two degrees, fcp-tune's cost-balanced placement (mcore-dynamic is Megatron-Core's)",
            _pow2, _possible_pow2, baselines=lambda rule, n, b, longest: [], pow2=True,
        ),
        Kind(
            "thresholds", "a length -> degree table, any integer degrees", _lookup, _possible_thresholds,
            fields=(THRESHOLDS,), baselines=lambda rule, n, b, longest: [],
        ),
        Kind("adaptive", "FCP: any group size, chosen per batch", _minimum, _possible_any, aligned=False),
    )
})
POLICY_KINDS: tuple[str, ...] = tuple(KINDS)
# Kinds the command line builds from a name (KIND[:D]); the others come from files.
SPEC_KINDS: tuple[str, ...] = tuple(k for k, rule in KINDS.items() if rule.from_spec)


def kind_of(name: str) -> Kind:
    """The registry entry of kind ``name`` (``KeyError`` for an unknown kind)."""
    return KINDS[name]


def takers(field: Field) -> str:
    """``kind X`` / ``kinds X, Y``: the kinds that take ``field``, for error messages."""
    names = [k for k, rule in KINDS.items() if field in rule.fields]
    return ("kind " if len(names) == 1 else "kinds ") + ", ".join(names)


def spec_help() -> str:
    """The kinds the command line accepts by name, e.g. ``megatron[:D], static[:D], pow2, adaptive``."""
    return ", ".join(KINDS[k].spec for k in SPEC_KINDS)
