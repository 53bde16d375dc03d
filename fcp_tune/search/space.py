"""The thresholds search space, ordered by construction, and its memory constraint.

A candidate policy has ``K`` length ranges: boundaries ``b_1 < ... < b_{K-1}`` and a CP
degree per range. Boundaries are encoded as fractions of the *remaining* log2 span:

    x_0 = log2(min_len);  x_i = x_{i-1} + u_i * (log2(max_len) - x_{i-1}),  u_i in [0, 1]
    b_i = max(round(2 ** x_i), b_{i-1} + 1)

so every sample is an ordered, valid boundary vector (no pruning, no rejected trials),
and any ordered vector has an encoding (:meth:`ThresholdSpace.encode`) for enqueuing
baselines. Degrees are integers in ``1..N`` sampled on a log scale. Optuna names them
``threshold_i_position`` (u_i) and ``cp_degree_range_i``. Memory is a constraint:
the degree of range ``i`` must hold its longest sequence in the per-rank budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

from fcp_tune.errors import FcpTuneError
from fcp_tune.policy import Policy, min_degree_for
from fcp_tune.schemes import DEFAULT_SCHEME


def cut_param(i: int) -> str:
    """Optuna name of threshold ``i + 1``: where it sits between the previous one and the
    longest length, as a fraction of the remaining log2-length span (0..1)."""
    return f"threshold_{i + 1}_position"


def degree_param(i: int) -> str:
    """Optuna name of the CP degree of length range ``i + 1`` (shortest first)."""
    return f"cp_degree_range_{i + 1}"


@dataclass(frozen=True)
class ThresholdSpace:
    """Search space of ``ranges`` length ranges for a world of ``world_size`` ranks."""

    world_size: int
    token_budget: int
    ranges: int
    min_len: int
    max_len: int
    scheme: str = DEFAULT_SCHEME

    def __post_init__(self) -> None:
        if self.world_size < 1:
            raise FcpTuneError(f"world_size must be >= 1, got {self.world_size}")
        if self.ranges < 1:
            raise FcpTuneError(f"ranges must be >= 1, got {self.ranges}")
        if not 1 <= self.min_len <= self.max_len:
            raise FcpTuneError(f"need 1 <= min_len <= max_len, got {self.min_len}, {self.max_len}")
        if self.ranges - 1 > self.max_len - self.min_len + 1:
            raise FcpTuneError(f"{self.ranges} ranges do not fit lengths {self.min_len}..{self.max_len}")
        if min_degree_for(self.max_len, self.token_budget) > self.world_size:
            raise FcpTuneError(
                f"the longest sequence ({self.max_len} tokens) does not fit {self.world_size} ranks x "
                f"{self.token_budget} tokens"
            )

    # -------------------------------------------------------------- decode / encode
    def boundaries(self, fractions: Sequence[float]) -> tuple[int, ...]:
        """Ordered boundaries from the ``u_i`` fractions (length ``ranges - 1``)."""
        lo, hi = math.log2(self.min_len), math.log2(self.max_len)
        x, prev, out = lo, 0, []
        for u in fractions:
            x = x + min(max(float(u), 0.0), 1.0) * (hi - x)
            b = max(int(round(2.0**x)), prev + 1)
            out.append(b)
            prev = b
        return tuple(out)

    def encode(self, boundaries: Sequence[int], degrees: Sequence[int]) -> dict[str, Any]:
        """Trial parameters that decode to (about) these boundaries and exactly these degrees."""
        if len(boundaries) != self.ranges - 1 or len(degrees) != self.ranges:
            raise FcpTuneError(f"expected {self.ranges - 1} boundaries and {self.ranges} degrees")
        lo, hi = math.log2(self.min_len), math.log2(self.max_len)
        params: dict[str, Any] = {}
        x = lo
        for i, b in enumerate(boundaries):
            xb = min(max(math.log2(max(b, 1)), x), hi)
            params[cut_param(i)] = 0.0 if hi - x <= 0 else (xb - x) / (hi - x)
            x = xb
        for i, d in enumerate(degrees):
            params[degree_param(i)] = int(min(max(d, 1), self.world_size))
        return params

    def suggest(self, trial: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Sample (boundaries, degrees) from an Optuna trial."""
        fractions = [trial.suggest_float(cut_param(i), 0.0, 1.0) for i in range(self.ranges - 1)]
        degrees = tuple(trial.suggest_int(degree_param(i), 1, self.world_size, log=True) for i in range(self.ranges))
        return self.boundaries(fractions), degrees

    def from_params(self, params: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        fractions = [params[cut_param(i)] for i in range(self.ranges - 1)]
        return self.boundaries(fractions), tuple(int(params[degree_param(i)]) for i in range(self.ranges))

    # -------------------------------------------------------------- policies
    def policy(self, boundaries: Sequence[int], degrees: Sequence[int], metadata: dict | None = None) -> Policy:
        """The thresholds policy; merges neighbouring ranges with the same degree."""
        b, d = list(boundaries), list(degrees)
        i = 0
        while i < len(b):
            if d[i] == d[i + 1]:
                del b[i], d[i]
            else:
                i += 1
        return Policy(
            kind="thresholds", world_size=self.world_size, token_budget=self.token_budget, scheme=self.scheme,
            boundaries=tuple(b), degrees=tuple(d), metadata=metadata or {},
        )

    def memory_violation(self, boundaries: Sequence[int], degrees: Sequence[int]) -> float:
        """Ranks missing to hold each range's longest sequence, summed (<= 0: fits)."""
        tops = list(boundaries) + [self.max_len]
        return float(
            sum(max(0, min_degree_for(min(t, self.max_len), self.token_budget) - d) for t, d in zip(tops, degrees))
        )

    def baseline_params(self) -> list[tuple[str, dict[str, Any]]]:
        """Threshold encodings of the baselines: static at each feasible degree dividing N, then pow2."""
        need = min_degree_for(self.max_len, self.token_budget)
        out = []
        for d in range(need, self.world_size + 1):
            if self.world_size % d:
                continue  # static CP needs DP = N / CP
            params = {cut_param(i): 0.5 for i in range(self.ranges - 1)}
            params.update({degree_param(i): d for i in range(self.ranges)})
            out.append((f"static:{d}", params))
        out.append(("pow2", self.encode(*self.pow2_thresholds())))
        return out

    def two_class_params(self) -> list[tuple[str, dict[str, Any]]]:
        """Seed trials: every two-degree table split at a memory step (``budget * 2^k`` below the
        longest length), power-of-two degrees dividing N, each range's degree holding its longest
        sequence. The thresholds planner balances each degree class on its own groups, so its best
        tables are single-degree or two-class ones; TPE, starting from the single-degree baselines,
        rarely samples a cut exactly at a memory step with both degrees right (issue 16: it missed a
        two-class table 4.6 % faster than its result on the stdlib at half fill)."""
        if self.ranges < 2:
            return []
        degrees = [d for d in (2**i for i in range(self.world_size.bit_length())) if self.world_size % d == 0]
        top_need = min_degree_for(self.max_len, self.token_budget)
        out = []
        cut = self.token_budget
        while cut < self.max_len:
            if cut > self.min_len:
                # lower cuts halve down from ``cut`` (same degree on both sides: merged by ``policy``)
                cuts = sorted({max(self.min_len + 1, cut >> j) for j in range(self.ranges - 1)})
                while len(cuts) < self.ranges - 1:
                    cuts.insert(0, max(1, cuts[0] - 1))
                low_need = min_degree_for(cut, self.token_budget)
                for lo in degrees:
                    for hi in degrees:
                        if lo < hi and lo >= low_need and hi >= top_need:
                            params = self.encode(cuts, [lo] * (self.ranges - 1) + [hi])
                            out.append((f"two-class:{cut}:{lo}/{hi}", params))
            cut *= 2
        return out

    def pow2_thresholds(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Megatron-Core's ladder in ``ranges`` ranges: tops ``budget * 2^k``, degrees ``2^k``.

        With too many rungs the lowest ranges merge upwards (a higher degree still fits
        memory); with too few, the first range is split (same degree on both sides).
        """
        tops: list[int] = []
        k = 0
        while self.token_budget * 2**k < self.max_len:
            tops.append(self.token_budget * 2**k)
            k += 1
        degs = [min(2**i, self.world_size) for i in range(len(tops) + 1)]
        while len(degs) > self.ranges:
            del tops[0], degs[0]
        while len(degs) < self.ranges:
            first = tops[0] if tops else self.max_len
            tops.insert(0, max(1, first // 2) if first > 1 else 1)
            degs.insert(0, degs[0])
        return tuple(tops), tuple(degs)
