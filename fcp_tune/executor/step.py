"""One training step of one policy on one rank: plan, run the waves, all-reduce, AdamW.

Every rank derives the same plan from the same batch (checked with one all-reduce of the
plan digest), runs the waves whose groups it belongs to (forward and backward of its
share, gradients accumulate), then waits for the slowest rank (idle), all-reduces the
gradients and the loss over the world (comm) and steps the optimizer. The loss is
normalised per predicted token over the whole global batch, so the result does not
depend on how sequences were spread over groups and waves.
"""

from __future__ import annotations

import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F

from fcp_tune.attention import cp_attention
from fcp_tune.attention.comm import timed_comm
from fcp_tune.executor.data import local_batch, target_count
from fcp_tune.executor.model import Decoder
from fcp_tune.executor.planahead import Planned, plan_inline
from fcp_tune.executor.pool import GroupPool
from fcp_tune.planner import Plan
from fcp_tune.policy import Policy


@dataclass(frozen=True)
class FaultSpec:
    """Make ``rank`` fail at ``step``, for tests: after its first forward (``raise``, or
    ``kill`` with SIGKILL), or in the planner (``plan``: planning that step's batch raises)."""

    rank: int
    step: int
    kind: str = "raise"

    def __post_init__(self) -> None:
        if self.kind not in ("raise", "kill", "plan"):
            raise ValueError(f"fault kind must be 'raise', 'kill' or 'plan', got {self.kind!r}")

    def planner_failure(self, rank: int, step: int) -> Optional[str]:
        """The message the planner raises for ``(rank, step)``, or ``None``."""
        if self.kind == "plan" and (self.rank, self.step) == (rank, step):
            return f"injected planner fault on rank {rank} at step {step}"
        return None


@dataclass
class PolicyState:
    """A policy's model replica and optimizer on this rank (mutable training state)."""

    name: str
    policy: Policy
    model: Decoder
    optimizer: torch.optim.Optimizer
    params: list = field(default_factory=list)


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


def agree_on_plan(planned: Planned, device: torch.device) -> Plan:
    """One all-reduce proves every rank holds the same plan; a planning failure anywhere
    raises on every rank (naming the failing rank) instead of leaving peers waiting."""
    rank = dist.get_rank()
    digest = planned.plan.digest() if planned.plan is not None else 0
    failed = rank + 1 if planned.error is not None else 0
    t = torch.tensor([digest, -digest, failed], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if int(t[2]):
        if planned.error is not None:
            raise RuntimeError(
                f"planning failed on rank {rank}: {type(planned.error).__name__}: {planned.error}"
            ) from planned.error
        raise RuntimeError(f"planning failed on rank {int(t[2]) - 1} (this is rank {rank})")
    if int(t[0]) != digest or int(t[1]) != -digest:
        raise RuntimeError(f"ranks derived different plans (digest {digest} on rank {rank})")
    assert planned.plan is not None
    return planned.plan


def _loss_dtype(logits: torch.Tensor) -> torch.Tensor:
    return logits if logits.dtype == torch.float64 else logits.float()


def train_step(
    state: PolicyState,
    seqlens: Sequence[int],
    step: int,
    pool: GroupPool,
    seed: int,
    device: torch.device,
    cost=None,
    fault: Optional[FaultSpec] = None,
    planned: Optional[Planned] = None,
) -> StepRecord:
    """Run one step of ``state``'s policy on the global batch ``seqlens``; return this rank's record.

    ``planned`` is the step's plan made ahead (:class:`~fcp_tune.executor.planahead.PlanAhead`);
    without it the batch is planned here. The groups the plan needs are created first (lazily).
    """
    rank, world = dist.get_rank(), dist.get_world_size()
    if planned is None:
        fail = fault.planner_failure(rank, step) if fault is not None else None
        planned = plan_inline(seqlens, state.policy, world, cost, fail)
    t_start = time.perf_counter() - planned.wait_s  # the step began when the wait for its plan did
    plan = agree_on_plan(planned, device)
    new_groups = pool.ensure(plan.ranges(), step)
    t_waves = time.perf_counter()
    wave_cpu: list[float] = []
    wave_comm: list[float] = []
    with timed_comm() as attn_comm:
        loss_sum, peak_act = run_waves(state, plan, seqlens, step, pool, seed, device, fault,
                                       (wave_cpu, wave_comm, attn_comm))
    t_work = time.perf_counter() - t_start
    waves_s = time.perf_counter() - t_waves
    t0 = time.perf_counter()
    dist.barrier()
    idle = time.perf_counter() - t0
    t0 = time.perf_counter()
    loss_total = allreduce_grads(state.params, loss_sum, device)
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
        new_groups=new_groups, plan=plan.to_dict() if rank == 0 else None,
        seqlens=[int(x) for x in seqlens] if rank == 0 else None,
        wave_cpu_s=tuple(wave_cpu), wave_comm_s=tuple(wave_comm),
    )


def run_waves(
    state: PolicyState,
    plan: Plan,
    seqlens: Sequence[int],
    step: int,
    pool: GroupPool,
    seed: int,
    device: torch.device,
    fault: Optional[FaultSpec] = None,
    timing: Optional[tuple[list, list, list]] = None,
) -> tuple[float, int]:
    """Forward and backward of this rank's share of every wave; gradients accumulate.

    Returns this rank's part of the loss (per-token over the whole global batch) and the
    largest activation memory saved for backward in one wave. ``timing``, if given, is
    ``(wave_cpu, wave_comm, comm_acc)``: the first two get one entry per wave, this thread's
    CPU seconds in the wave and the seconds it was blocked in CP communication, read from
    ``comm_acc`` (the list an enclosing :func:`~fcp_tune.attention.comm.timed_comm` yields).
    """
    rank = dist.get_rank()
    cfg = state.model.cfg
    n_targets = max(1, target_count(seqlens))
    loss_sum = 0.0
    peak_act = 0
    for w in range(len(plan.waves)):
        g = plan.group_of(w, rank)
        if g is None:
            if timing is not None:
                timing[0].append(0.0)
                timing[1].append(0.0)
            continue
        cpu0, comm0 = time.thread_time(), (timing[2][0] if timing is not None else 0.0)
        lb = local_batch(seqlens, g.seq_ids, g.size, rank - g.start, cfg.vocab_size, seed, step)
        group = pool.get(g.start, g.size)

        def attention(q, k, v, _cu=lb.cu_seqlens, _group=group):
            return cp_attention(q, k, v, _cu, group=_group, causal=True, scheme=state.policy.scheme)

        with _saved_bytes() as saved:
            logits = state.model(lb.ids.to(device), lb.positions.to(device), attention)
            loss = F.cross_entropy(_loss_dtype(logits), lb.targets.to(device), ignore_index=-100, reduction="sum")
            loss = loss / n_targets
        peak_act = max(peak_act, saved[0])
        if fault is not None and fault.kind != "plan" and fault.rank == rank and fault.step == step:
            if fault.kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"injected fault on rank {rank} at step {step}")
        loss.backward()
        loss_sum += float(loss.detach())
        if timing is not None:
            timing[0].append(time.thread_time() - cpu0)
            timing[1].append(timing[2][0] - comm0)
    return loss_sum, peak_act


def allreduce_grads(params: list, loss_sum: float, device: torch.device) -> float:
    """Sum gradients and the loss over the world in one collective."""
    flat = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params]
    buf = torch.cat(flat + [torch.tensor([loss_sum], dtype=flat[0].dtype, device=device)])
    dist.all_reduce(buf)
    offset = 0
    for p in params:
        n = p.numel()
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        p.grad.copy_(buf[offset : offset + n].view_as(p))
        offset += n
    return float(buf[-1])
