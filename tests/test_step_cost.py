"""Critical-path step time (:func:`fcp_tune.planner.cost.finish_times`) on a plan whose waves overlap."""

from __future__ import annotations

from fcp_tune.planner.cost import finish_times, step_cost
from fcp_tune.planner.plan import Group, Plan, Wave


class _ByLength:
    """A cost that is each group's total length in seconds, whatever its degree."""

    def group_time(self, seqlens, degree):
        return float(sum(seqlens))


def _plan() -> Plan:
    # 4 ranks. Wave 0: ranks 0-1 take 1 s, ranks 2-3 take 5 s; wave 1: the other way round.
    # Summing each wave's slowest group gives 10 s; each rank pair is busy only 6 s, and no
    # group spans both pairs, so nothing makes one pair wait for the other.
    return Plan(4, (Wave((Group(0, 2, (0,)), Group(2, 2, (1,)))), Wave((Group(0, 2, (2,)), Group(2, 2, (3,))))), "adaptive")


def test_critical_path_is_shorter_than_summed_slowest_groups():
    seqlens = [1, 5, 5, 1]
    plan = _plan()
    assert finish_times(plan, [[1.0, 5.0], [5.0, 1.0]]) == [6.0, 6.0, 6.0, 6.0]
    assert step_cost(plan, seqlens, _ByLength()) == 6.0
    summed = sum(max(float(seqlens[s]) for g in w.groups for s in g.seq_ids) for w in plan.waves)
    assert summed == 10.0


def test_a_group_waits_for_the_last_of_its_ranks():
    # Wave 1 is one group over all 4 ranks: it starts when the slowest pair is free (5 s).
    plan = Plan(4, (Wave((Group(0, 2, (0,)), Group(2, 2, (1,)))), Wave((Group(0, 4, (2,)),))), "adaptive")
    assert finish_times(plan, [[1.0, 5.0], [2.0]]) == [7.0, 7.0, 7.0, 7.0]
    assert step_cost(plan, [1, 5, 2], _ByLength()) == 7.0
