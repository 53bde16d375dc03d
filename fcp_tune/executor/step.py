"""One training step of one policy on one rank: plan, run the waves, all-reduce, AdamW.

The step is a user of the public integration API (:mod:`fcp_tune.integration`): plan
agreement, lazy groups, this rank's shards, the loss scale and the gradient sum come from
there; this module adds the timing and memory accounting ``fcp-tune run`` reports.

Every rank derives the same plan from the same batch (checked with one all-reduce of the
plan digest), runs the waves whose groups it belongs to (forward and backward of its
share, gradients accumulate), then waits for the slowest rank (idle), all-reduces the
gradients and the loss over the world (comm) and steps the optimizer. The loss is
normalised per predicted token over the whole global batch, so the result does not
depend on how sequences were spread over groups and waves.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import torch
import torch.distributed as dist

from fcp_tune.attention.comm import timed_comm
from fcp_tune.executor.data import batch_tokens
from fcp_tune.executor.model import Decoder
from fcp_tune.integration import FCP, GroupPool, Planned, StepInputs, plan_inline, sync_gradients, wave_loss
from fcp_tune.planner import Plan
from fcp_tune.policy import Policy


@dataclass
class PolicyState:
    """A policy's model replica and optimizer on this rank (mutable training state)."""

    name: str
    policy: Policy
    model: Decoder
    optimizer: torch.optim.Optimizer
    params: list = field(default_factory=list)
    fcp: Optional[FCP] = None  # made on first use, sharing the run's group pool


@dataclass(frozen=True)
class StepRecord:
    """What one rank measured in one step of one policy."""

    policy: str
    step: int
    rank: int
    wall_s: float
    busy_s: float
    comm_s: float
    idle_s: float
    loss: float
    tokens: int
    waves: int
    layout: str
    plan_digest: int
    peak_bytes: int
    plan_s: float
    # The step's phases on this rank, for cost-model validation (``fcp-tune validate``):
    # wall_s = plan_wait_s + (digest check, group creation) + waves_s + idle_s + sync_s + opt_s.
    waves_s: float = 0.0  # in this rank's groups: forward+backward incl. CP comm and in-group waits
    sync_s: float = 0.0  # gradient (and loss) all-reduce over the world
    opt_s: float = 0.0  # optimizer step + zero_grad
    plan_wait_s: float = 0.0  # planning not hidden behind the previous step (all of plan_s inline)
    new_groups: int = 0  # process groups created for this step's plan (lazily)
    plan: Optional[dict] = None  # the executed plan (Plan.to_dict), on rank 0 only
    seqlens: Optional[list] = None  # the global batch it planned, on rank 0 only
    # Per wave (0 where this rank is in no group): CPU seconds of this rank's thread (compute,
    # not waits: load on the machine does not inflate it) and seconds blocked in CP communication.
    wave_cpu_s: tuple[float, ...] = ()
    wave_comm_s: tuple[float, ...] = ()


def describe_plan(plan: Plan) -> str:
    """Group sizes per wave, e.g. ``"2+1+1 | 4"``."""
    return " | ".join("+".join(str(g.size) for g in w.groups) for w in plan.waves)


@contextmanager
def _saved_bytes() -> Iterator[list]:
    """Count bytes of non-parameter tensors saved for backward (activation memory)."""
    acc = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not (t.is_leaf and t.requires_grad):
            acc[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield acc


def train_step(
    state: PolicyState,
    seqlens: Sequence[int],
    step: int,
    pool: GroupPool,
    seed: int,
    device: torch.device,
    cost=None,
    planned: Optional[Planned] = None,
) -> StepRecord:
    """Run one step of ``state``'s policy on the global batch ``seqlens``; return this rank's record.

    ``planned`` is the step's plan made ahead (:class:`~fcp_tune.integration.PlanAhead`);
    without it the batch is planned here. The groups the plan needs are created first (lazily).
    """
    rank = dist.get_rank()
    if planned is None:
        planned = plan_inline(seqlens, state.policy, cost)
    t_start = time.perf_counter() - planned.wait_s  # the step began when the wait for its plan did
    inputs = prepare(state, seqlens, step, pool, seed, device, planned)
    plan = inputs.plan
    t_waves = time.perf_counter()
    wave_cpu = [0.0] * len(plan.waves)  # per wave; 0 where this rank is in no group
    wave_comm = [0.0] * len(plan.waves)
    with timed_comm() as attn_comm:
        loss_sum, peak_act = run_waves(state, inputs, (wave_cpu, wave_comm, attn_comm))
    t_work = time.perf_counter() - t_start
    waves_s = time.perf_counter() - t_waves
    t0 = time.perf_counter()
    dist.barrier()
    idle = time.perf_counter() - t0
    t0 = time.perf_counter()
    loss_total = sync_gradients(state.params, loss_sum)
    allreduce_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    state.optimizer.step()
    state.optimizer.zero_grad(set_to_none=False)
    opt_s = time.perf_counter() - t0
    wall = time.perf_counter() - t_start
    model_bytes = sum(p.numel() * p.element_size() for p in state.params) * 4  # params, grads, Adam m and v
    return StepRecord(
        policy=state.name, step=step, rank=rank, wall_s=wall,
        busy_s=t_work - attn_comm[0] + opt_s, comm_s=attn_comm[0] + allreduce_s, idle_s=idle,
        loss=loss_total, tokens=int(sum(seqlens)), waves=len(plan.waves), layout=describe_plan(plan),
        plan_digest=plan.digest(), peak_bytes=peak_act + model_bytes, plan_s=planned.plan_s,
        waves_s=waves_s, sync_s=allreduce_s, opt_s=opt_s, plan_wait_s=planned.wait_s,
        new_groups=inputs.new_groups, plan=plan.to_dict() if rank == 0 else None,
        seqlens=[int(x) for x in seqlens] if rank == 0 else None,
        wave_cpu_s=tuple(wave_cpu), wave_comm_s=tuple(wave_comm),
    )


def prepare(
    state: PolicyState,
    seqlens: Sequence[int],
    step: int,
    pool: GroupPool,
    seed: int,
    device: torch.device,
    planned: Planned,
) -> StepInputs:
    """This rank's waves of step ``step`` through the public API (plan agreement, lazy groups)."""
    if state.fcp is None:
        state.fcp = FCP(state.policy, plan_ahead=False, pool=pool, device=device)
    tokens = batch_tokens(seqlens, state.model.cfg.vocab_size, seed, step)
    return state.fcp.step(tokens, planned=planned)


def run_waves(state: PolicyState, inputs: StepInputs,
              timing: Optional[tuple[list, list, list]] = None) -> tuple[float, int]:
    """Forward and backward of this rank's share of every wave; gradients accumulate.

    Returns this rank's part of the loss (per-token over the whole global batch) and the
    largest activation memory saved for backward in one wave. ``timing``, if given, is
    ``(wave_cpu, wave_comm, comm_acc)``: the first two (one slot per wave of the plan) get this
    thread's CPU seconds in each of its waves and the seconds it was blocked in CP
    communication, read from ``comm_acc`` (the list an enclosing
    :func:`~fcp_tune.attention.comm.timed_comm` yields).
    """
    loss_sum = 0.0
    peak_act = 0
    for wave in inputs.waves:
        cpu0, comm0 = time.thread_time(), (timing[2][0] if timing is not None else 0.0)
        with _saved_bytes() as saved:
            logits = state.model(wave.input_ids, wave.position_ids, wave.attention)
            loss = wave_loss(logits, wave)
        peak_act = max(peak_act, saved[0])
        loss.backward()
        loss_sum += float(loss.detach())
        if timing is not None:
            timing[0][wave.index] += time.thread_time() - cpu0
            timing[1][wave.index] += timing[2][0] - comm0
    return loss_sum, peak_act
