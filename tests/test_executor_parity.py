"""Loss parity: every policy kind at world sizes 3 and 4 matches a single-process reference.

The distributed side plans the batch, shards each group's sequences, runs the waves
through cp_attention and all-reduces the gradients; the reference runs every sequence
whole in float64 with dense attention. A wrong RoPE position, a wrong loss normalisation
or a lost gradient contribution makes these fail.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
import torch.distributed as dist

import fcp_tune.integration.session as session_mod
from fcp_tune.executor.model import build_model
from fcp_tune.executor.reference import reference_step
from fcp_tune.executor.step import PolicyState, prepare, run_waves
from fcp_tune.integration import GroupPool, Planned, shard_sequences, sync_gradients
from fcp_tune.launch import OPTIMIZER_MODULES, run_local
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.planner import candidate_ranges, plan_batch
from fcp_tune.policy import Policy

MODEL = ModelConfig(vocab_size=64, hidden=32, layers=2, heads=4, kv_heads=2, ffn_hidden=48, name="test")
# A batch with a dominant sequence, sequences shorter than 2d, and a length-1 sequence.
SEQLENS = [61, 3, 17, 1, 29, 8, 40, 2]
BUDGET = 32


def _policies(world: int, scheme: str) -> list[Policy]:
    base = dict(world_size=world, token_budget=BUDGET, scheme=scheme)
    return [
        Policy(kind="static", degree=2, **base),
        Policy(kind="static", degree=world, **base),
        Policy(kind="pow2", **base),
        Policy(kind="thresholds", boundaries=(4, 20), degrees=(1, 2, world), **base),
        Policy(kind="adaptive", **base),
    ]


def _rank(rank, world, dtypes, scheme):
    """Every policy in every dtype of ``dtypes`` (one launch serves several test cases)."""
    out = {dtype: [] for dtype in dtypes}
    policies = _policies(world, scheme)
    ranges = sorted({r for p in policies for r in candidate_ranges(p)}, key=lambda r: (r[1], r[0]))
    pool = GroupPool(ranges, world)
    for dtype, policy in itertools.product(dtypes, policies):
        cfg = dataclasses.replace(MODEL, dtype=dtype)
        model = build_model(cfg, seed=1)
        params = list(model.parameters())
        state = PolicyState(policy.kind, policy, model, torch.optim.SGD(params, lr=0.0), params)
        plan = plan_batch(SEQLENS, policy)
        plan.validate(SEQLENS, policy)
        inputs = prepare(state, SEQLENS, 3, pool, 7, torch.device("cpu"), Planned(plan, None, 0.0, 0.0))
        loss_part, _ = run_waves(state, inputs)
        loss = sync_gradients(params, loss_part)
        grads = {n: p.grad.detach().double().clone() for n, p in model.named_parameters()}
        out[dtype].append((policy.kind, plan.to_dict(), loss, grads))
    dist.barrier()
    return out if rank == 0 else None


DTYPES = ("float64", "float32")


@pytest.fixture(scope="module")
def reference():
    """The float64 single-process loss and gradients every case compares with."""
    ref_model = build_model(dataclasses.replace(MODEL, dtype="float64"), seed=1)
    return reference_step(ref_model, SEQLENS, step=3, seed=7)


@pytest.fixture(scope="module")
def launched():
    """One launch per world size runs both dtypes; each parametrised case reads its part."""
    cache = {}

    def get(world):
        if world not in cache:
            scheme = "ring" if world == 3 else "allgather"
            cache[world] = run_local(_rank, world, args=(DTYPES, scheme), timeout=240, collective_timeout=60,
                                      preload=OPTIMIZER_MODULES)[0]
        return cache[world]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("world", [3, 4])
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-9), ("float32", 1e-5)])
def test_loss_and_gradients_match_reference(world, dtype, tol, reference, launched):
    results = launched(world)[dtype]
    ref_loss, ref_grads = reference
    assert ref_loss > 1.0  # a real cross-entropy, not a degenerate zero
    kinds = set()
    for kind, plan, loss, grads in results:
        kinds.add(kind)
        assert abs(loss - ref_loss) <= tol * max(1.0, abs(ref_loss)), (kind, loss, ref_loss)
        for name, g in ref_grads.items():
            scale = max(1.0, float(g.abs().max()))
            err = float((grads[name] - g).abs().max()) / scale
            assert err <= tol, f"{kind} {name}: gradient error {err:.3e} > {tol} (plan {plan})"
    assert kinds == {"static", "pow2", "thresholds", "adaptive"}
    # the plans really spread sequences over several groups
    assert any(len(w) > 1 for _, plan, _, _ in results for w in plan["waves"])


def _max_errors(world, dtype, scheme, reference):
    results = run_local(_rank, world, args=((dtype,), scheme), timeout=240, collective_timeout=60,
                        preload=OPTIMIZER_MODULES)[0][dtype]
    ref_loss, ref_grads = reference
    loss_err = max(abs(loss - ref_loss) for _, _, loss, _ in results)
    grad_err = max(
        float((grads[n] - g).abs().max()) / max(1.0, float(g.abs().max()))
        for _, _, _, grads in results
        for n, g in ref_grads.items()
    )
    return loss_err, grad_err


def _chunk_local_positions(tokens, targets, seq_ids, degree, rank):
    """A classic CP bug: RoPE positions counted inside the local shard, not the sequence."""
    sh = shard_sequences(tokens, targets, seq_ids, degree, rank)
    return dataclasses.replace(sh, position_ids=torch.arange(sh.input_ids.shape[0]))


@pytest.mark.slow
def test_parity_catches_wrong_rope_positions(monkeypatch, reference):
    monkeypatch.setattr(session_mod, "shard_sequences", _chunk_local_positions)  # forked ranks inherit it
    _, grad_err = _max_errors(3, "float64", "allgather", reference)
    assert grad_err > 1e-6


@pytest.mark.slow
def test_parity_catches_wrong_loss_normalisation(monkeypatch, reference):
    monkeypatch.setattr(session_mod, "target_count", lambda targets: sum(t.numel() for t in targets))  # counts last tokens too
    loss_err, grad_err = _max_errors(3, "float64", "ring", reference)
    assert loss_err > 1e-6 and grad_err > 1e-9
