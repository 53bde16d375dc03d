"""FCP in your own training loop: plan each global batch, agree on it, hand this rank its waves.

>>> fcp = FCP("policy.yaml")                    # after dist.init_process_group
>>> for step in fcp.stream(batches):            # plans batch k+1 while batch k trains
...     part = 0.0
...     for wave in step.waves:                 # only the waves this rank takes part in
...         logits = model(wave.input_ids, wave.position_ids, wave.attention)
...         loss = wave_loss(logits, wave)      # its share of the global per-token mean
...         loss.backward()
...         part += loss.item()
...     loss = sync_gradients(model.parameters(), part)   # gradients summed over the world
...     opt.step(); opt.zero_grad()

:class:`FCP` owns the three distributed pieces the bundled executor uses too: planning on a
background thread (:class:`~fcp_tune.integration.planahead.PlanAhead`), the plan-digest
agreement (:func:`~fcp_tune.integration.agree.agree_on_plan`) and the lazily created
process groups, within the policy's communicator cap
(:class:`~fcp_tune.integration.pool.GroupPool`). Everything else is pure
(:mod:`fcp_tune.integration.shards`).
"""

from __future__ import annotations

import dataclasses
import os
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

import torch
import torch.distributed as dist

from fcp_tune.attention import cp_attention
from fcp_tune.attention.comm import WORLD
from fcp_tune.integration.agree import agree_on_plan
from fcp_tune.integration.planahead import PlanAhead, Planned, plan_inline
from fcp_tune.integration.pool import GroupPool
from fcp_tune.integration.shards import Shard, as_sequences, global_targets, shard_sequences, target_count
from fcp_tune.planner import Plan, candidate_ranges
from fcp_tune.planner.vocab import per_rank_count
from fcp_tune.policy import Policy, load_policy

_CURRENT: ContextVar[Optional["WaveInputs"]] = ContextVar("fcp_tune_current_wave", default=None)


def current_wave() -> Optional["WaveInputs"]:
    """The wave whose ``with wave:`` block is running (read by the Hugging Face attention)."""
    return _CURRENT.get()


@dataclass(frozen=True, eq=False)
class WaveInputs:
    """This rank's packed inputs of one wave (1-D tensors, ``T_local`` tokens, on the device).

    ``input_ids`` in zigzag order; ``position_ids`` restart at 0 for each sequence (RoPE);
    ``labels`` the targets, shifted on the global sequences (``-100``: not predicted);
    ``cu_seqlens`` the group's global cumulative lengths, ``local_cu_seqlens`` each
    sequence's share of the local tensors; ``group`` what to pass to attention (``None`` for a
    one-rank group: no communication); ``loss_scale`` is ``1 / (targets in the global batch)``,
    so ``sum of cross-entropy * loss_scale`` is this wave's share of the global per-token mean.
    An idle wave (:attr:`idle`, only yielded with ``include_idle``) has no token and no group.
    """

    index: int
    ranks: Optional[tuple[int, int]]  # (start, size) of this rank's group; None when idle
    group: Optional[dist.ProcessGroup]
    scheme: str
    seq_ids: tuple[int, ...]
    shard: Shard  # the tensors and lengths below
    loss_scale: float

    input_ids = property(lambda self: self.shard.input_ids)
    position_ids = property(lambda self: self.shard.position_ids)
    labels = property(lambda self: self.shard.labels)
    cu_seqlens = property(lambda self: self.shard.cu_seqlens)
    local_cu_seqlens = property(lambda self: self.shard.local_cu_seqlens)
    n_targets = property(lambda self: self.shard.n_targets)

    @property
    def idle(self) -> bool:
        return self.ranks is None

    @property
    def loss_weight(self) -> float:
        """This wave's share of the predicted tokens of the whole global batch."""
        return self.n_targets * self.loss_scale

    def attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                  scale: Optional[float] = None) -> torch.Tensor:
        """:func:`~fcp_tune.attention.cp_attention` on this wave's local ``(T, H, D)`` tensors."""
        return cp_attention(q, k, v, self.cu_seqlens, group=self.group, causal=causal, scheme=self.scheme,
                            scale=scale)

    def __enter__(self) -> "WaveInputs":
        """``with wave:`` makes this the wave the Hugging Face attention (:mod:`.hf`) runs."""
        object.__setattr__(self, "_token", _CURRENT.set(self))
        return self

    def __exit__(self, *exc: object) -> None:
        _CURRENT.reset(self._token)  # type: ignore[attr-defined]


@dataclass(frozen=True, eq=False)
class StepInputs:
    """One global batch on this rank: the agreed plan and this rank's waves."""

    plan: Plan
    waves: tuple[WaveInputs, ...]
    n_targets: int  # predicted tokens in the whole global batch
    planned: Planned  # planning time, and the wait for it not hidden by plan-ahead
    new_groups: int  # process groups created for this plan (lazily)
    seqlens: tuple[int, ...] = field(default=())

    def __iter__(self) -> Iterator[WaveInputs]:
        return iter(self.waves)


def communicator_cap(policy: Policy) -> Optional[int]:
    """The communicators per rank a policy's plans can need (``None``: unbounded)."""
    if policy.kind == "adaptive" and policy.max_communicators == 0:
        return None
    return per_rank_count(candidate_ranges(policy), policy.world_size)


Batch = Union[Sequence, dict]


class FCP:
    """Plans global batches under a policy and hands this rank its packed inputs, wave by wave.

    Args:
        policy: a :class:`~fcp_tune.policy.Policy` or the path of a policy YAML file; its
            ``world_size`` must be the world's.
        group: the world's process group: :data:`~fcp_tune.attention.WORLD` (the default) or
            ``dist.group.WORLD``; FCP's groups are ranges of it.
        cost: the planner's cost function (default :class:`~fcp_tune.planner.DefaultCost`);
            for Ulysses pass :func:`fcp_tune.planner.cost.feasible_cost` so every degree
            divides the head count.
        plan_ahead: plan the batch given to :meth:`prefetch` on a background thread.
        include_idle: also yield the waves this rank sits out, as empty idle waves (needed
            when every rank must run as many forward passes, e.g. FSDP).
        device: where the tensors go (default: the current CUDA device on NCCL, else CPU).
        pool, planner: share a :class:`GroupPool` / :class:`PlanAhead` between several
            ``FCP`` objects (the bundled executor runs policies side by side).
    """

    def __init__(
        self,
        policy: Union[Policy, str, "os.PathLike[str]"],
        group: Any = WORLD,
        *,
        cost: Any = None,
        plan_ahead: bool = True,
        include_idle: bool = False,
        device: Optional[torch.device] = None,
        pool: Optional[GroupPool] = None,
        planner: Optional[PlanAhead] = None,
    ) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("FCP needs torch.distributed initialised (dist.init_process_group) first")
        if group is not WORLD and group is not dist.group.WORLD:
            if group is None or dist.get_world_size(group) != dist.get_world_size():
                raise ValueError("FCP plans over the whole world: pass WORLD or dist.group.WORLD as group")
        self.policy = policy if isinstance(policy, Policy) else load_policy(policy)
        self.world_size, self.rank = dist.get_world_size(), dist.get_rank()
        if self.policy.world_size != self.world_size:
            raise ValueError(
                f"the policy is for {self.policy.world_size} ranks but the world has {self.world_size}; "
                "use policy.with_world_size(n)"
            )
        self.cost = cost
        self.include_idle = include_idle
        if device is None:
            cuda = dist.get_backend() == "nccl"
            device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
        self.device = device
        self.pool = pool if pool is not None else GroupPool((), self.world_size, communicator_cap(self.policy))
        self._own_planner = planner is None and plan_ahead
        self.planner = planner if planner is not None else (PlanAhead() if plan_ahead else None)
        self.steps = 0

    # ------------------------------------------------------------------ planning
    def _key(self, seqlens: Sequence[int]) -> tuple:
        return (id(self), tuple(int(n) for n in seqlens))

    def prefetch(self, batch: Batch) -> None:
        """Start planning ``batch`` (sequences, or their lengths) on the background thread."""
        if self.planner is None:
            return
        seqlens = _seqlens(batch)
        key = self._key(seqlens)
        if key not in self.planner:
            self.planner.submit(key, seqlens, self.policy, self.cost)

    def _planned(self, seqlens: Sequence[int]) -> Planned:
        key = self._key(seqlens)
        if self.planner is not None and key in self.planner:
            return self.planner.take(key)
        return plan_inline(seqlens, self.policy, self.cost)

    # ------------------------------------------------------------------ one batch
    def step(self, sequences: Sequence, labels: Optional[Sequence] = None,
             planned: Optional[Planned] = None) -> StepInputs:
        """Plan (or take the prefetched plan of) one global batch and build this rank's waves.

        Collective: every rank calls it with the same batch. ``sequences`` are token ids
        (lists or 1-D tensors); ``labels``, aligned with them (Hugging Face convention,
        ``-100`` for tokens not to learn), default to the tokens. Raises on every rank if
        planning failed anywhere or the ranks planned differently.
        """
        tokens = as_sequences(sequences)
        if not tokens:
            raise ValueError("the batch has no sequences")
        targets = global_targets(tokens, labels)
        seqlens = tuple(int(t.numel()) for t in tokens)
        planned = planned if planned is not None else self._planned(seqlens)
        plan = agree_on_plan(planned, self.device)
        new_groups = self.pool.ensure(plan.ranges(), self.steps)
        self.steps += 1
        total = target_count(targets)
        scale = 1.0 / max(1, total)
        waves = []
        for w in range(len(plan.waves)):
            g = plan.group_of(w, self.rank)
            if g is None:
                if self.include_idle:
                    waves.append(self._wave(w, None, None, (), _empty_shard(), scale))
                continue
            sh = shard_sequences(tokens, targets, g.seq_ids, g.size, self.rank - g.start)
            waves.append(self._wave(w, (g.start, g.size), self.pool.get(g.start, g.size), g.seq_ids, sh, scale))
        return StepInputs(plan, tuple(waves), total, planned, new_groups, seqlens)

    def _wave(self, index, ranks, group, seq_ids, sh: Shard, scale: float) -> WaveInputs:
        dev = self.device
        sh = dataclasses.replace(sh, input_ids=sh.input_ids.to(dev), position_ids=sh.position_ids.to(dev),
                                 labels=sh.labels.to(dev))
        return WaveInputs(index, ranks, group, self.policy.scheme, tuple(seq_ids), sh, scale)

    def stream(self, batches: Iterable[Batch]) -> Iterator[StepInputs]:
        """:meth:`step` over ``batches``, planning each next batch while the current one trains.

        A batch is a list of sequences or a dict with ``input_ids`` (and optional ``labels``).
        """
        it = iter(batches)
        nxt = next(it, _END)
        while nxt is not _END:
            cur, nxt = nxt, next(it, _END)
            if nxt is not _END:
                self.prefetch(nxt)
            seqs, labels = _split(cur)
            yield self.step(seqs, labels)

    def close(self) -> None:
        """End the planning thread (if this object made it)."""
        if self._own_planner and self.planner is not None:
            self.planner.close()

    def __enter__(self) -> "FCP":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_END = object()


def _split(batch: Batch) -> tuple[Sequence, Optional[Sequence]]:
    if isinstance(batch, dict):
        return batch["input_ids"], batch.get("labels")
    return batch, None


def _seqlens(batch: Batch) -> list[int]:
    seqs, _ = _split(batch)
    if all(isinstance(s, int) for s in seqs):
        return [int(s) for s in seqs]
    return [int(t.numel()) for t in as_sequences(seqs)]


def _empty_shard() -> Shard:
    e = torch.empty(0, dtype=torch.long)
    return Shard(e, e, e, (0,), (0,), 0)
