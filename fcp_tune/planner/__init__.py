"""The batch planner: which contiguous rank groups process which sequences, wave by wave.

Pure, deterministic Python + numpy (no torch, no process group), so every rank can plan
the same batch on its own and compare :meth:`Plan.digest` values. Modules, one job each:

- :mod:`.plan`: the :class:`Plan` / :class:`Wave` / :class:`Group` types and ``validate``;
- :mod:`.cost`: the :class:`CostFn` protocol, :class:`DefaultCost`, :func:`step_cost`;
- :mod:`.packing`: exact per-rank loads, bin packing, aligned placement;
- :mod:`.static`, :mod:`.threshold` (pow2 + thresholds), :mod:`.adaptive` (FCP) with
  :mod:`.solve` (the least-makespan degree assignment);
- :mod:`.api`: :func:`plan_batch` and :func:`candidate_ranges`.
"""

from fcp_tune.planner.api import candidate_ranges, plan_batch
from fcp_tune.planner.cost import CostFn, DefaultCost, cost_table, step_cost
from fcp_tune.planner.plan import Group, Plan, Wave

__all__ = [
    "CostFn",
    "DefaultCost",
    "Group",
    "Plan",
    "Wave",
    "candidate_ranges",
    "cost_table",
    "plan_batch",
    "step_cost",
]
