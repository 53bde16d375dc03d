"""What a context-parallel scheme is, torch-free: blocks, communication steps, memory, feasible degrees.

A :class:`Scheme` describes one way a group of ``d`` ranks computes exact attention over a
zigzag-sharded packed batch (:mod:`fcp_tune.schemes.layout`):

- :meth:`Scheme.blocks`: the attention blocks each rank computes at each step, as row
  ranges (:class:`Blocks`). The executor's autograd functions run exactly these
  (:mod:`fcp_tune.attention.blocks` turns them into kernel calls); the cost model prices
  their shapes on the profile's grid.
- :meth:`Scheme.comm_steps`: its collectives per layer (:class:`CommStep`: collective,
  message bytes in nccl-tests convention, the compute steps each overlaps with).
- :meth:`Scheme.kept_bytes`: what it keeps for backward beyond the rank's own activations.
- :meth:`Scheme.check_degree`: which group sizes it can run for a model's head counts.

Every block is *full* (every query row sees every key row) or a *causal square* (same
positions, lower triangle), so kernels never need a bottom-right-aligned mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from fcp_tune.modelcfg import ModelConfig
from fcp_tune.schemes.layout import ShardLayout

PHASES = ("forward", "backward")


@dataclass(frozen=True, eq=False)
class Blocks:
    """Attention blocks of every rank at every step: arrays of shape ``(steps, d, S, slots)``.

    At step ``t`` rank ``r`` attends query rows ``[q0, q1)`` of its query buffer to key rows
    ``[k0, k1)`` of that step's key buffer (the buffers are the scheme's: see its module);
    ``causal`` marks causal squares. Empty ranges mean "no block". ``head_share`` is the
    fraction of the query heads each block covers (1, or ``1/d`` when heads are split).
    """

    q0: np.ndarray
    q1: np.ndarray
    k0: np.ndarray
    k1: np.ndarray
    causal: np.ndarray
    head_share: float = 1.0

    @property
    def q_len(self) -> np.ndarray:
        return self.q1 - self.q0

    @property
    def k_len(self) -> np.ndarray:
        return self.k1 - self.k0

    @property
    def steps(self) -> int:
        return int(self.q0.shape[0])


def make_blocks(q0, q1, k0, k1, causal, head_share: float = 1.0) -> Blocks:
    """:class:`Blocks` from broadcastable arrays (all broadcast to one ``(steps, d, S, slots)`` shape)."""
    arrays = np.broadcast_arrays(*(np.asarray(a) for a in (q0, q1, k0, k1, causal)))
    q0, q1, k0, k1 = (a.astype(np.int64) for a in arrays[:4])
    return Blocks(q0, q1, k0, k1, arrays[4].astype(bool), float(head_share))


@dataclass(frozen=True)
class CommStep:
    """One collective per layer: ``op`` (a name of :data:`fcp_tune.profile.collectives.OPS`) moving
    ``nbytes`` (nccl-tests message size), in ``phase``; ``during`` lists the compute steps of that
    phase it overlaps with (one transfer per listed step), empty when nothing overlaps it."""

    phase: str
    op: str
    nbytes: float
    during: tuple[int, ...] = ()
    what: str = ""

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"CommStep.phase must be one of {', '.join(PHASES)}, got {self.phase!r}")
        if self.nbytes < 0:
            raise ValueError(f"CommStep.nbytes must be >= 0, got {self.nbytes}")


def kv_bytes(model: ModelConfig) -> float:
    """K and V bytes per token per layer in the model dtype."""
    return float(model.kv_bytes_per_token())


def acc_bytes(model: ModelConfig) -> int:
    """Bytes of one gradient element in the accumulation dtype (fp64 stays fp64, else fp32)."""
    return 8 if model.dtype == "float64" else 4


def dkv_bytes(model: ModelConfig) -> float:
    """dK and dV bytes per token per layer in the accumulation dtype."""
    return float(2 * model.kv_heads * model.head_dim * acc_bytes(model))


class Scheme:
    """Base of the scheme objects; subclasses set ``name``, ``ops``, ``lockstep`` and the methods.

    ``lockstep``: the group advances step by step together (a step lasts as long as its
    slowest rank or its overlapped transfers); otherwise each rank runs its blocks back to
    back and the exposed collectives add to every rank.
    """

    name: ClassVar[str] = ""
    ops: ClassVar[tuple[str, ...]] = ()
    lockstep: ClassVar[bool] = False

    def blocks(self, layout: ShardLayout, causal: bool) -> Blocks:
        raise NotImplementedError

    def comm_steps(self, degree: int, width: float, model: ModelConfig) -> tuple[CommStep, ...]:
        """Collectives of one layer for a group of ``degree`` ranks whose largest rank holds ``width`` tokens."""
        raise NotImplementedError

    def kept_bytes(self, degree: int, counts: np.ndarray, model: ModelConfig) -> float:
        """Bytes per layer the busiest rank keeps for backward beyond its own activations."""
        return 0.0

    def degree_error(self, degree: int, heads: int, kv_heads: int) -> str | None:
        """Why ``degree`` cannot run for these head counts, or ``None`` when it can."""
        return None if int(degree) >= 1 else f"degree must be >= 1, got {degree}"

    def check_degree(self, degree: int, heads: int, kv_heads: int) -> None:
        """Raise ``ValueError`` naming the rule when this scheme cannot run ``degree``."""
        why = self.degree_error(degree, heads, kv_heads)
        if why is not None:
            raise ValueError(f"scheme {self.name}: {why}")

    def feasible(self, degree: int, model: ModelConfig) -> bool:
        return self.degree_error(degree, model.heads, model.kv_heads) is None

    def feasible_degrees(self, model: ModelConfig, max_degree: int) -> tuple[int, ...]:
        """Every degree ``1..max_degree`` this scheme can run for ``model``."""
        return tuple(d for d in range(1, int(max_degree) + 1) if self.feasible(d, model))

    def __repr__(self) -> str:
        return f"<scheme {self.name}>"
