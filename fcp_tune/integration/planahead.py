"""Planning overlapped with training: the next step's plan is made on a background thread.

:class:`PlanAhead` keeps one worker thread (a double buffer: the plan being used and the
next one being made). The runner submits job ``k + 1`` right after taking job ``k``, so
planning ``k + 1`` runs while step ``k`` trains; :meth:`PlanAhead.take` reports how long
the main thread still had to wait (the planning time *not* hidden). Planning is pure
(:func:`fcp_tune.planner.plan_batch`): the thread never touches process groups. A planner
exception is returned, not raised, so every rank can agree on the failure collectively
(:func:`fcp_tune.integration.agree.agree_on_plan`) instead of one rank leaving its peers hanging.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Hashable, Optional, Sequence

from fcp_tune.planner import Plan, plan_batch
from fcp_tune.policy import Policy


@dataclass(frozen=True)
class Planned:
    """A plan (or the exception planning raised), its planning time and the wait for it."""

    plan: Optional[Plan]
    error: Optional[BaseException]
    plan_s: float  # planning itself (on whichever thread made it)
    wait_s: float  # main thread blocked waiting for it (all of plan_s when planned inline)


def make_plan(seqlens: Sequence[int], policy: Policy,
              cost: Any = None) -> tuple[Optional[Plan], Optional[BaseException], float]:
    """Plan one batch, catching the planner's exception (returned, with the planning time)."""
    t0 = time.perf_counter()
    try:
        plan, error = plan_batch(seqlens, policy, cost=cost), None
    except Exception as exc:  # noqa: BLE001 - handed to the collective agreement
        plan, error = None, exc
    return plan, error, time.perf_counter() - t0


def plan_inline(seqlens: Sequence[int], policy: Policy, cost: Any = None) -> Planned:
    """Plan on the calling thread (nothing hidden)."""
    plan, error, dt = make_plan(seqlens, policy, cost)
    return Planned(plan, error, dt, dt)


class PlanAhead:
    """One background planning thread; use as a context manager (the thread ends with it)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fcp-plan")
        self._jobs: dict[Hashable, Future] = {}

    def submit(self, key: Hashable, seqlens: Sequence[int], policy: Policy, cost: Any = None) -> None:
        """Start planning ``seqlens`` under ``policy`` (with ``cost``) in the background, filed under ``key``."""
        if key in self._jobs:
            raise ValueError(f"plan {key!r} was already submitted")
        self._jobs[key] = self._pool.submit(make_plan, list(seqlens), policy, cost)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._jobs

    def take(self, key: Hashable) -> Planned:
        """Wait for the plan filed under ``key`` and hand it over (with the wait measured)."""
        try:
            job = self._jobs.pop(key)
        except KeyError:
            raise ValueError(f"plan {key!r} was never submitted") from None
        t0 = time.perf_counter()
        plan, error, dt = job.result()
        return Planned(plan, error, dt, time.perf_counter() - t0)

    def close(self) -> None:
        for job in self._jobs.values():
            job.cancel()
        self._jobs.clear()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> "PlanAhead":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
