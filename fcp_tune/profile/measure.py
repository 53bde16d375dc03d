"""``measure_profile``: time attention blocks, collectives and token-linear work; build a Profile.

Under torchrun (``RANK`` and ``WORLD_SIZE`` set) it uses that world (NCCL when CUDA is
present, else gloo); otherwise it starts ``nproc`` local processes itself
(:func:`fcp_tune.launch.run_local`: forked gloo, or spawned NCCL when there is one GPU per
process). Every rank measures the same attention grid at the same time (the way ranks
share a machine in training) and the profile keeps the median over ranks per point.
Attention uses the executor's own kernels
(:func:`~fcp_tune.attention.kernels.block_forward`, and ``accumulate_backward`` through
:func:`~fcp_tune.attention.kernels.bound_backward`, as the schemes call them) on full blocks
``q_len x k_len`` and causal squares (the only two kinds of block any scheme of
:mod:`fcp_tune.schemes` asks for; the cost model looks each scheme's blocks up on this
grid), with the model's head shape and dtype. The collectives cover every scheme's
``ops`` (``p2p_ring``, ``all_gather``/``reduce_scatter``, ``all_to_all``). Rank 0 sends
progress events; the caller turns them into progress bars (:class:`ProgressEvents`).
"""

from __future__ import annotations

import datetime as _dt
import functools
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
import torch.distributed as dist

from fcp_tune.attention.kernels import block_forward, bound_backward, default_scale
from fcp_tune.errors import FcpTuneError
from fcp_tune.limits import check_int, check_local_procs
from fcp_tune.hardware import collect_hardware
from fcp_tune.launch import OPTIMIZER_MODULES, init_from_env, run_local, under_torchrun
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.profile.collectives import OPS
from fcp_tune.attention.comm import WORLD, group_info
from fcp_tune.profile.layer import (
    activation_bytes_per_token, measure_core_overhead, measure_linear, sync_device, torch_dtype,
)
from fcp_tune.profile.measure_comm import combine_collectives, measure_collectives_rank
from fcp_tune.profile.schema import AttentionPoint, LinearCost, MemoryCost, Profile

Event = tuple  # ("stage", description, total) | ("advance",)
KIB, MIB = 1 << 10, 1 << 20


@dataclass(frozen=True)
class ProfileSettings:
    """What to measure. ``group_sizes`` None means every size ``2..world``."""

    model: ModelConfig
    lengths: tuple[int, ...]
    message_bytes: tuple[int, ...]
    warmup: int = 2
    repeats: int = 5
    linear_tokens: int = 4096
    ops: tuple[str, ...] = OPS
    group_sizes: Optional[tuple[int, ...]] = None
    threads: int = 1

    def __post_init__(self) -> None:
        if not self.lengths or any(int(x) < 1 for x in self.lengths):
            raise FcpTuneError(f"attention lengths must be positive, got {self.lengths}")
        if max(self.lengths) > MAX_PROFILE_LEN:  # longer blocks are extrapolated, not measured
            raise FcpTuneError(f"max_len (largest attention length) must be <= {MAX_PROFILE_LEN:,}, "
                               f"got {max(self.lengths):,}")
        if not self.message_bytes or any(int(x) < 4 for x in self.message_bytes):
            raise FcpTuneError(f"message sizes must be >= 4 bytes, got {self.message_bytes}")
        bad = [op for op in self.ops if op not in OPS]
        if bad:
            raise FcpTuneError(f"unknown collective(s) {bad}; expected some of {', '.join(OPS)}")
        if self.warmup < 0 or self.repeats < 1 or self.linear_tokens < 1:
            raise FcpTuneError("warmup must be >= 0, repeats and linear_tokens >= 1")


# The longest attention block measured (1 M tokens); the cost model extrapolates beyond.
MAX_PROFILE_LEN = 1 << 20


def default_settings(model: ModelConfig, quick: bool, cuda: bool, max_len: int | None = None) -> ProfileSettings:
    """Grids sized for the device: powers of two from 64 up to 16K (GPU) or 4K (CPU); ``quick``
    stops at 4K / 1K, measures 4 KiB..4 MiB messages instead of 4 KiB..64 MiB, with fewer repeats."""
    top = check_int("max_len", max_len, 1, MAX_PROFILE_LEN) if max_len else ((4096 if quick else 16384) if cuda else (1024 if quick else 4096))
    lengths = tuple(2**i for i in range(6, 31) if 2**i <= top) or (top,)
    if quick:
        sizes = (4 * KIB, 64 * KIB, 1 * MIB, 4 * MIB)
        return ProfileSettings(model, lengths, sizes, warmup=1, repeats=3, linear_tokens=1024 if not cuda else 8192)
    sizes = tuple(4 * KIB * 4**i for i in range(8))  # 4 KiB .. 64 MiB
    return ProfileSettings(model, lengths, sizes, warmup=2, repeats=5, linear_tokens=4096 if not cuda else 16384)


def _repeats(one_s: float, minimum: int, target_s: float) -> int:
    """Repeats for a call taking ``one_s``: enough for ``target_s`` of samples, 10x ``minimum`` at most."""
    return int(min(10 * minimum, max(minimum, target_s / max(one_s, 1e-9))))


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    t0 = time.perf_counter()
    fn()
    sync_device(device)
    return time.perf_counter() - t0


def measure_attention(
    model: ModelConfig, lengths: Sequence[int], device: torch.device, warmup: int, repeats: int,
    emit: Callable[[Event], None] = lambda e: None, target_s: float = 0.02,
) -> list[tuple[int, int, bool, float, float]]:
    """``(q_len, k_len, causal, fwd_s, bwd_s)`` for every full ``q x k`` pair and causal square.

    The grid is swept in rounds, one forward and one backward sample per block per round,
    so a burst of interference from other work on the host spoils one sample of many
    blocks rather than every sample of one; each block's median is kept. ``warmup`` rounds
    come first (at least one: it also sizes the repeats). Every block gets at least
    ``repeats`` samples, more (up to 10x) when one backward takes under ``target_s / repeats``.
    """
    gen = torch.Generator(device="cpu").manual_seed(0)
    top = max(lengths)
    dt = torch_dtype(model.dtype)
    hd = model.head_dim

    def rnd(rows: int, heads: int) -> torch.Tensor:
        return torch.randn(rows, heads, hd, generator=gen, dtype=torch.float32).to(device=device, dtype=dt)

    q, k, v, dout = rnd(top, model.heads), rnd(top, model.kv_heads), rnd(top, model.kv_heads), rnd(top, model.heads)
    scale = default_scale(hd)
    pairs = [(a, b, False) for a in lengths for b in lengths] + [(s, s, True) for s in lengths]
    calls = []
    for ql, kl, causal in pairs:
        qq, kk, vv, dd = q[:ql], k[:kl], v[:kl], dout[:ql]
        qr, kr = [(0, ql)], [(0, kl)]
        o, lse = block_forward(qq, kk, vv, qr, kr, causal, scale)
        calls.append((
            functools.partial(block_forward, qq, kk, vv, qr, kr, causal, scale),
            bound_backward(dd, qq, kk, vv, o, lse, qr, kr, causal, scale),  # as the schemes run it
        ))
    rounds = max(1, warmup)
    emit(("stage", f"attention warm-up ({len(pairs)} blocks x {rounds})", len(pairs) * rounds))
    probe = [0.0] * len(pairs)
    for _ in range(rounds):
        for i, (fwd, bwd) in enumerate(calls):
            _timed(fwd, device)
            probe[i] = _timed(bwd, device)
            emit(("advance",))
    counts = [_repeats(t, repeats, target_s) for t in probe]
    emit(("stage", f"attention ({len(pairs)} blocks, {sum(counts)} samples)", sum(counts)))
    samples: list[tuple[list[float], list[float]]] = [([], []) for _ in pairs]
    for r in range(max(counts)):
        for i, (fwd, bwd) in enumerate(calls):
            if r < counts[i]:
                samples[i][0].append(_timed(fwd, device))
                samples[i][1].append(_timed(bwd, device))
                emit(("advance",))
    return [(ql, kl, c, statistics.median(f), statistics.median(b)) for (ql, kl, c), (f, b) in zip(pairs, samples)]


def _device(backend: str) -> torch.device:
    if backend == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def profile_rank(rank: int, world: int, settings: ProfileSettings, events: Any = None) -> dict[str, Any]:
    """One rank's measurements (every rank of the world calls this with the same settings)."""
    backend = dist.get_backend() if dist.is_initialized() else "gloo"
    device = _device(backend)
    if rank == 0 and events is not None:
        emit: Callable[[Event], None] = events.put if hasattr(events, "put") else events
    else:
        emit = lambda e: None  # noqa: E731
    advance = lambda: emit(("advance",))  # noqa: E731
    s = settings
    attention = measure_attention(s.model, s.lengths, device, s.warmup, s.repeats, emit)
    emit(("stage", "token-linear layers", 1))
    linear = measure_linear(s.model, s.linear_tokens, device, s.warmup, s.repeats)
    # The attention core's own bookkeeping, alone and over the whole world (it grows with the group).
    linear["core_s_per_token"] = measure_core_overhead(s.model, s.linear_tokens, device, s.warmup, s.repeats)
    linear["core_world_s_per_token"] = (
        measure_core_overhead(s.model, s.linear_tokens, device, s.warmup, s.repeats, group_info(WORLD))
        if world > 1 else linear["core_s_per_token"]
    )
    advance()
    sizes = s.group_sizes if s.group_sizes is not None else tuple(range(2, world + 1))
    comm: dict = {}
    if world > 1 and sizes:
        total = len(s.ops) * len(sizes) * len(s.message_bytes)
        emit(("stage", f"collectives (group sizes {sizes[0]}..{sizes[-1]})", total))
        comm = measure_collectives_rank(rank, s.ops, sizes, s.message_bytes, s.warmup, s.repeats, device, advance)
    return {"attention": attention, "linear": linear, "comm": comm, "backend": backend, "device": str(device)}


def combine(results: Sequence[dict[str, Any]], settings: ProfileSettings, command: str, label: str) -> Profile:
    """Build the :class:`Profile` from every rank's :func:`profile_rank` result."""
    points = []
    for i, (ql, kl, causal, _, _) in enumerate(results[0]["attention"]):
        fwd = statistics.median(r["attention"][i][3] for r in results)
        bwd = statistics.median(r["attention"][i][4] for r in results)
        points.append(AttentionPoint(ql, kl, causal, max(fwd, 1e-9), max(bwd, 1e-9)))
    lin = {k: statistics.median(r["linear"][k] for r in results) for k in results[0]["linear"]}
    m = settings.model
    world = len(results)
    return Profile(
        label=label, created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), command=command,
        hardware=collect_hardware(), world_size=world, backend=results[0]["backend"], model=m,
        attention=tuple(points), collectives=combine_collectives([r["comm"] for r in results]),
        linear=LinearCost(lin["seconds_per_token"], lin["flops_per_token"],
                          f"measured: executor Decoder ({int(lin['measured_layers'])} of {m.layers} layers, scaled by "
                          f"FLOPs) with identity attention core, fwd+bwd incl. embedding, LM head and loss, at "
                          f"{settings.linear_tokens}/16, /4, /2 and {settings.linear_tokens} tokens fitted as wave_s + "
                          f"tokens x seconds_per_token; core_s_per_token (+ core_slope_s_per_token per extra rank): "
                          f"AllGatherAttention on 1 and {world} ranks minus its kernels and collectives, 512-token "
                          f"sequences; median over ranks",
                          wave_s=lin["wave_s"], core_s_per_token=lin["core_s_per_token"],
                          core_slope_s_per_token=(lin["core_world_s_per_token"] - lin["core_s_per_token"]) / (world - 1)
                          if world > 1 else 0.0),
        memory=MemoryCost(activation_bytes_per_token(m), 16.0, lin["optimizer_s_per_param"],
                          "activations: saved-tensor bytes of one executor Block (+ attention core Q,K,V,lse); "
                          "16 B/param (weights, grads, Adam m and v in the model dtype; fp32 master with bf16); "
                          "optimizer: measured AdamW step"),
        extrapolation=None, sources=(),
        notes=(f"{world} {results[0]['backend']} processes on {results[0]['device']}, {settings.threads} thread(s) each; "
               f"attention: median over ranks of each rank's median over >= {settings.repeats} interleaved rounds "
               f"(more for blocks under 20 ms) after {max(1, settings.warmup)} warm-up round(s); collectives: "
               f"median/max over ranks of per-rank medians of >= {settings.repeats} calls (10x for messages under "
               f"1 MiB) after {settings.warmup} warm-up"),
    )



def measure_profile(
    nproc: int = 2,
    quick: bool = False,
    model: ModelConfig | None = None,
    settings: ProfileSettings | None = None,
    command: str = "",
    label: str = "measured",
    on_event: Callable[[Event], None] | None = None,
    timeout: float = 3600.0,
    max_len: int | None = None,
) -> Profile | None:
    """Measure a profile; returns it (on rank 0 under torchrun; ``None`` on other ranks).

    ``settings`` overrides the defaults chosen from ``quick``, the device and ``max_len``.
    ``on_event`` receives rank 0's progress events (``("stage", text, total)``, ``("advance",)``).
    """
    from fcp_tune.modelcfg import PRESETS

    model = model or PRESETS["tiny"]
    cuda = torch.cuda.is_available()
    settings = settings or default_settings(model, quick, cuda, max_len)
    if under_torchrun():
        init_from_env()
        rank, world = dist.get_rank(), dist.get_world_size()
        if not cuda:
            torch.set_num_threads(settings.threads)
        result = profile_rank(rank, world, settings, on_event if rank == 0 else None)
        gathered: list = [None] * world if rank == 0 else []
        dist.gather_object(result, gathered if rank == 0 else None, dst=0)
        return combine(gathered, settings, command, label) if rank == 0 else None
    check_local_procs("nproc", nproc)
    backend = "nccl" if cuda and torch.cuda.device_count() >= nproc else "gloo"
    results = run_local(profile_rank, nproc, args=(settings,), backend=backend, timeout=timeout,
                        threads=settings.threads, on_event=on_event or (lambda e: None),
                        preload=OPTIMIZER_MODULES)
    return combine(results, settings, command, label)


@dataclass
class ProgressEvents:
    """Turns progress events into a rich progress bar per stage (use as ``on_event``)."""

    progress: Any
    _task: Any = field(default=None, init=False)

    def __call__(self, event: Event) -> None:
        if event[0] == "stage":
            if self._task is not None:
                self.progress.update(self._task, completed=self.progress.tasks[self._task].total)
            self._task = self.progress.add_task(event[1], total=event[2])
        elif event[0] == "advance" and self._task is not None:
            self.progress.advance(self._task)
