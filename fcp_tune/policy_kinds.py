"""Policy kinds: one registry entry per kind, with everything that differs between kinds.

Each :class:`Kind` says how a policy of that kind picks a sequence's degree (``wanted``,
vectorised over a batch), which degrees it can ever give (``possible``, for the
communicators to create), which planner plans it (a ``module:function`` name, imported on
first use because planner modules import :mod:`fcp_tune.policy`), and a few flags read by
the generic code (:meth:`Policy.degree_for <fcp_tune.policy.Policy.degree_for>`,
:func:`~fcp_tune.planner.packing.policy_degrees`, :meth:`Plan.validate
<fcp_tune.planner.Plan.validate>`, :func:`~fcp_tune.planner.candidate_ranges`). Adding a
kind is one entry here plus its planner module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

if TYPE_CHECKING:
    from fcp_tune.policy import Policy

WantedFn = Callable[["Policy", np.ndarray, np.ndarray], np.ndarray]
PossibleFn = Callable[["Policy", int, int], Iterable[int]]


def ceil_pow2(n: int) -> int:
    """The smallest power of two >= ``n`` (1 for ``n <= 1``)."""
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def pad_to_multiple(lengths: Iterable[int] | np.ndarray, multiple: int) -> np.ndarray:
    """Each length rounded up to a multiple of ``multiple`` (int64 array; 1 leaves them as they are)."""
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    arr = np.asarray(lengths, dtype=np.int64)
    return -(-arr // multiple) * multiple


@dataclass(frozen=True)
class Kind:
    """One policy kind.

    ``wanted(policy, lengths, mins)``: the kind's degree per sequence before the memory
    minimum ``mins`` is applied. ``possible(policy, top, max_min)``: every degree it can give
    a length in ``1..top`` (``max_min``: the largest memory minimum there), before the
    world-size cut. ``raise_to_min``: a degree below the memory minimum is raised to it
    (else such a sequence is an error, as it is for Megatron-LM). ``exact``: groups have
    exactly the policy's degree; ``aligned``: degree ``d`` only at multiples of ``d``
    (else any contiguous range). ``pad_multiple(policy)``: every sequence is padded to a
    multiple of this before it is planned and costed (1: no padding).
    """

    name: str
    summary: str
    planner: str
    wanted: WantedFn
    possible: PossibleFn
    takes_degree: bool = False
    raise_to_min: bool = True
    exact: bool = False
    aligned: bool = True
    pow2: bool = False
    degree_divides_world: bool = False
    pad_multiple: Callable[["Policy"], int] = lambda policy: 1

    def padded(self, policy: "Policy", lengths: Iterable[int] | np.ndarray) -> np.ndarray:
        """The lengths this kind computes for ``lengths`` (after its padding rule)."""
        return pad_to_multiple(lengths, self.pad_multiple(policy))

    def plan_fn(self) -> Callable[..., Any]:
        """The planner function ``(lengths, policy, cost) -> waves of (start, size, ids)``."""
        module, _, func = self.planner.partition(":")
        return getattr(importlib.import_module(module), func)


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


def _possible_mcore(policy: "Policy", top: int, max_min: int) -> Iterable[int]:
    # Megatron-Core creates a group for every power of two below N and the whole DP x CP group;
    # fill_empty_gpus may grow a group to either.
    n = policy.world_size
    return {1 << k for k in range(n.bit_length())} | {n}


def _mcore_pad(policy: "Policy") -> int:
    return 2 * policy.world_size  # dp x cp x 2 (GPTDatasetConfig, hybrid CP)


def _possible_thresholds(policy: "Policy", top: int, max_min: int) -> Iterable[int]:
    from fcp_tune.policy import min_degree_for

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


def thd_pad_multiple(degree: int) -> int:
    """What TransformerEngine's THD format with CP pads each sequence to: ``2 * degree`` (1 without CP)."""
    return 2 * int(degree) if int(degree) > 1 else 1


def _megatron_pad(policy: "Policy") -> int:
    return thd_pad_multiple(policy.degree)  # type: ignore[arg-type]


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "megatron", "Megatron-LM static CP: one degree, DP = N / CP, first-fit packing by tokens",
            "fcp_tune.planner.megatron:plan_megatron", _fixed, _possible_megatron, takes_degree=True,
            raise_to_min=False, exact=True, degree_divides_world=True, pad_multiple=_megatron_pad,
        ),
        Kind(
            "static", "fcp-tune's cost-balanced static planner: one degree, LPT micro-batches",
            "fcp_tune.planner.static:plan_static", _fixed, _possible_static, takes_degree=True, exact=True,
        ),
        Kind(
            "pow2", "power-of-two degrees ceil_pow2(min degree), cost-balanced placement (see mcore-dynamic for Megatron-Core's)",
            "fcp_tune.planner.threshold:plan_threshold", _pow2, _possible_pow2, pow2=True,
        ),
        Kind(
            "mcore-dynamic", "Megatron-Core dynamic CP (BalancedCPScheduler): power-of-two groups by L^2/cp load",
            "fcp_tune.planner.mcore_dynamic:plan_mcore_dynamic", _pow2, _possible_mcore, pow2=True,
            pad_multiple=_mcore_pad,
        ),
        Kind(
            "thresholds", "a length -> degree table, any integer degrees",
            "fcp_tune.planner.threshold:plan_threshold", _lookup, _possible_thresholds,
        ),
        Kind(
            "adaptive", "FCP: any group size, chosen per batch",
            "fcp_tune.planner.adaptive:plan_adaptive", _minimum,
            lambda policy, top, max_min: range(1, max_min + 1), aligned=False,
        ),
    )
}


def kind_of(name: str) -> Kind:
    """The registry entry of kind ``name`` (``KeyError`` for an unknown kind)."""
    return KINDS[name]
