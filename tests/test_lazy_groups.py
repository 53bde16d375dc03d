"""Cluster-scale execution on gloo: lazy groups within the cap, planning ahead, failures.

Adaptive runs over several steps whose plans change groups: the executor creates exactly
the groups the plans use, when they first need them, never more per rank than the
vocabulary's cap, and the losses match a single-process float64 reference trained with
the same AdamW steps. Planning on the background thread gives the same plans as planning
inline, and a planner exception stops every rank with an error naming it, not a hang.
"""

from __future__ import annotations

import pytest
import torch

from fcp_tune.executor import RunConfig, run_training
from fcp_tune.executor.model import build_model
from fcp_tune.executor.reference import reference_step
from fcp_tune.launch import RankFailure
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.planner import Plan
from fcp_tune.planner.vocab import build_vocabulary, per_rank_count
from fcp_tune.policy import Policy
from fcp_tune.workload import BatchSampler, load_workload
from tests.faults import planner_fault

MODEL = ModelConfig(vocab_size=64, hidden=32, layers=2, heads=4, kv_heads=2, ffn_hidden=48, name="test",
                    dtype="float64")
WORKLOAD = load_workload("lognormal:median=16,sigma=1.0,max=120,n=500", global_batch_tokens=240)
STEPS, LR, SEED, BUDGET = 4, 1e-3, 0, 32
CAPS = {4: 4, 6: 5}  # below the 6 and 15 contiguous ranges of size >= 2


def _config(world: int, **kw) -> RunConfig:
    policy = Policy("adaptive", world, BUDGET, max_communicators=CAPS[world])
    return RunConfig((("adaptive", policy),), WORKLOAD, MODEL, steps=STEPS, warmup=1, seed=SEED, lr=LR, **kw)


def _reference_losses() -> list[float]:
    torch.manual_seed(0)
    model = build_model(MODEL, SEED)
    opt = torch.optim.AdamW(list(model.parameters()), lr=LR, weight_decay=0.0)
    sampler, out = BatchSampler(WORKLOAD, seed=SEED), []
    for step in range(STEPS):
        loss, _ = reference_step(model, sampler.batch(step), step=step, seed=SEED)  # sets .grad
        opt.step()
        out.append(loss)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("world", [4, 6])
def test_adaptive_run_creates_groups_lazily_within_the_cap_and_matches_float64(world):
    report = run_training(_config(world), timeout=240, collective_timeout=60)
    steps = report.results[0].steps
    plans = [Plan.from_dict(s.plan) for s in steps]
    used = [{r for r in p.ranges() if r[1] > 1} for p in plans]
    assert len({frozenset(u) for u in used}) > 1  # the plans change groups between steps
    everything = set().union(*used)
    vocab = build_vocabulary(world, 8, CAPS[world])
    # exactly the groups the plans used, all from the vocabulary, within the cap per rank
    assert report.communicators == len(everything) < world * (world + 1) // 2 - world
    assert everything <= set(vocab.ranges)
    assert report.per_rank_communicators == per_rank_count(sorted(everything), world) <= CAPS[world]
    # lazily: each step creates the groups its plan is the first to use (singles included)
    seen: set = set()
    for s, p in zip(steps, plans):
        assert s.new_groups == len(set(p.ranges()) - seen)
        seen |= set(p.ranges())
    assert any(s.new_groups for s in steps[1:])
    for s, ref in zip(steps, _reference_losses()):
        assert abs(s.loss - ref) <= 1e-9 * max(1.0, abs(ref)), (s.step, s.loss, ref)
    assert all(len(s.plan_wait_s) == world for s in steps)


@pytest.mark.slow
def test_background_planning_gives_the_inline_plans():
    ahead = run_training(_config(4), timeout=240, collective_timeout=60).results[0].steps
    inline = run_training(_config(4, plan_ahead=False), timeout=240, collective_timeout=60).results[0].steps
    assert [s.plan_digest for s in ahead] == [s.plan_digest for s in inline]
    assert [s.plan for s in ahead] == [s.plan for s in inline]
    assert all(w == p for s in inline for w, p in zip(s.plan_wait_s, s.plan_s))  # inline: nothing hidden


@pytest.mark.slow
@pytest.mark.parametrize("plan_ahead", [True, False])
def test_planner_exception_stops_every_rank_with_a_clear_error(plan_ahead, monkeypatch):
    planner_fault(rank=1, step=2, patch=monkeypatch.setattr)
    cfg = _config(4, plan_ahead=plan_ahead)
    with pytest.raises(RankFailure) as info:
        run_training(cfg, timeout=120, collective_timeout=60)
    msg = str(info.value)
    assert info.value.rank == 1 and "timed out" not in msg
    assert msg.startswith("rank 1 failed: RuntimeError: planning failed on rank 1: "
                          "RuntimeError: injected planner fault")
    assert msg.endswith("(then ranks 0, 2, 3 stopped too)")  # every rank raised, none hung
    assert "injected planner fault on rank 1 at step 2" in info.value.details  # the planner's own traceback
