"""Ulysses end to end: the executor plans it only onto degrees it can run, and trains exactly.

The test model has 4 query and 2 K/V heads, so Ulysses runs degrees 1 and 2 only. An
adaptive run on 4 gloo ranks must plan every group at one of those sizes (the runner limits
the planner's cost to the scheme's feasible degrees) and match the single-process float64
reference loss; a fixed-degree policy that would need degree 4 is refused before launch,
with an error naming the head-count rule.
"""

from __future__ import annotations

import pytest
import torch

from fcp_tune.executor import RunConfig, run_training
from fcp_tune.executor.model import build_model
from fcp_tune.executor.reference import reference_step
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.planner import Plan
from fcp_tune.policy import Policy
from fcp_tune.workload import BatchSampler, load_workload

MODEL = ModelConfig(vocab_size=64, hidden=32, layers=2, heads=4, kv_heads=2, ffn_hidden=48, name="test",
                    dtype="float64")
WORKLOAD = load_workload("lognormal:median=24,sigma=1.0,max=90,n=500", global_batch_tokens=240)
STEPS, LR, SEED, BUDGET, WORLD = 3, 1e-3, 0, 48, 4


def test_fixed_degree_the_scheme_cannot_run_is_refused_before_launch():
    policy = Policy("static", WORLD, BUDGET, "ulysses", degree=4)
    with pytest.raises(ValueError, match="policy static: scheme ulysses: degree 4 must divide the K/V head count 2"):
        RunConfig((("static", policy),), WORKLOAD, MODEL, steps=2, warmup=1)
    RunConfig((("static", Policy("static", WORLD, BUDGET, "ulysses", degree=2)),), WORKLOAD, MODEL, steps=2, warmup=1)


@pytest.mark.slow
def test_adaptive_ulysses_run_uses_feasible_degrees_and_matches_float64():
    policy = Policy("adaptive", WORLD, BUDGET, "ulysses")
    cfg = RunConfig((("adaptive", policy),), WORKLOAD, MODEL, steps=STEPS, warmup=1, seed=SEED, lr=LR)
    steps = run_training(cfg, timeout=240, collective_timeout=60).results[0].steps
    sizes = {g.size for s in steps for w in Plan.from_dict(s.plan).waves for g in w.groups}
    assert 2 in sizes and sizes <= {1, 2}  # it communicates, and only at degrees Ulysses can run
    torch.manual_seed(0)
    model = build_model(MODEL, SEED)
    opt = torch.optim.AdamW(list(model.parameters()), lr=LR, weight_decay=0.0)
    sampler = BatchSampler(WORKLOAD, seed=SEED)
    for step, rec in enumerate(steps):
        ref, _ = reference_step(model, sampler.batch(step), step=step, seed=SEED)
        opt.step()
        assert abs(rec.loss - ref) <= 1e-9 * max(1.0, abs(ref)), (step, rec.loss, ref)
