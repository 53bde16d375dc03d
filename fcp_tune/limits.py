"""Bounds on every numeric input, and the checks that enforce them with one clear error.

Each bound is far above what anyone runs and low enough that the work it implies
stays finite (no 10^20-token batch sampled until killed, no 10^12-document allocation,
no 10^5 forked ranks):

- ``MAX_TOKENS`` (2^30, about 1.07 G) caps a sequence length, a per-rank token budget,
  a context length and a global batch: 64 x the largest published global batch (Llama 3,
  16 M tokens) and 100 x the longest published context (10 M).
- ``MAX_DOCUMENTS`` (10^7) caps a built-in generator's ``n``.
- ``MAX_WORLD_SIZE`` (16,384) caps a simulated or searched world size (-N): Llama 3 405B's
  16 K GPUs. The adaptive planner's DP grows with N^2: ``simulate static pow2 adaptive
  --profile h100-64-reference -w lognormal -b 16384 -N 1024`` took 67 s of CPU time
  (2026-12-03, the loaded 2-core VM); N = 4,096 did not finish in 300 s of wall time.
- ``LOCAL_PROCS_PER_CPU`` (8): local runs fork at most ``8 x os.cpu_count()`` ranks
  (and never more than ``MAX_LOCAL_PROCS``): more processes than that only time-share.
- ``MAX_TRIALS`` (10^6) search trials; ``MAX_STEPS`` (10^5) training steps;
  ``MAX_BATCHES`` (10^4) seeded batches; ``MAX_RANGES`` (64) length ranges.
- seeds are integers in ``[0, 2^32)`` (NumPy and torch accept every such seed).
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any, Optional

from fcp_tune.errors import FcpTuneError

MAX_TOKENS = 1 << 30
MAX_DOCUMENTS = 10_000_000
MAX_WORLD_SIZE = 16_384
LOCAL_PROCS_PER_CPU = 8
MAX_LOCAL_PROCS = 1024
MAX_TRIALS = 1_000_000
MAX_STEPS = 100_000
MAX_BATCHES = 10_000
MAX_RANGES = 64
MAX_SEED = (1 << 32) - 1
MAX_TIMEOUT_S = 7 * 24 * 3600.0


def check_int(name: str, value: Any, lo: int = 1, hi: Optional[int] = None) -> int:
    """``value`` as an int in ``[lo, hi]``; else an error naming ``name``, the value and the bound."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise FcpTuneError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < lo:
        what = {0: "a non-negative integer", 1: "a positive integer"}.get(lo, f">= {lo}")
        raise FcpTuneError(f"{name} must be {what}, got {value}")
    if hi is not None and value > hi:
        raise FcpTuneError(f"{name} must be <= {hi:,}, got {value:,}")
    return value


def check_opt_int(name: str, value: Any, lo: int = 1, hi: Optional[int] = None) -> Optional[int]:
    """:func:`check_int`, letting ``None`` through."""
    return None if value is None else check_int(name, value, lo, hi)


def check_float(name: str, value: Any, lo: Optional[float] = None, hi: Optional[float] = None,
                lo_open: bool = False) -> float:
    """``value`` as a finite float in range (``lo`` excluded with ``lo_open``); NaN and inf refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise FcpTuneError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise FcpTuneError(f"{name} must be a finite number, got {value}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise FcpTuneError(f"{name} must be {'>' if lo_open else '>='} {lo:g}, got {value:g}")
    if hi is not None and value > hi:
        raise FcpTuneError(f"{name} must be <= {hi:g}, got {value:g}")
    return value


def check_tokens(name: str, value: Any) -> int:
    """A positive token count at most :data:`MAX_TOKENS`."""
    return check_int(name, value, 1, MAX_TOKENS)


def check_seed(name: str, value: Any) -> int:
    """A seed in ``[0, 2^32)``."""
    return check_int(name, value, 0, MAX_SEED)


def check_timeout(name: str, value: Any) -> float:
    """A finite, positive number of seconds (at most a week)."""
    return check_float(name, value, 0.0, MAX_TIMEOUT_S, lo_open=True)


def max_local_procs() -> int:
    """The most ranks a local run forks: :data:`LOCAL_PROCS_PER_CPU` x the CPU count."""
    return min(MAX_LOCAL_PROCS, LOCAL_PROCS_PER_CPU * (os.cpu_count() or 1))


def check_local_procs(name: str, value: Any) -> int:
    """A local process count in ``[1, max_local_procs()]``."""
    limit = max_local_procs()
    n = check_int(name, value, 1)
    if n > limit:
        raise FcpTuneError(f"{name} must be <= {limit} ({LOCAL_PROCS_PER_CPU} x {os.cpu_count() or 1} CPUs) for "
                           f"a local run, got {n:,}; use torchrun for more ranks")
    return n
