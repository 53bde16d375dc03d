"""Token-linear work and activation memory of the executor's own decoder, measured.

"Token-linear" work is everything whose cost grows with the token count only: RMSNorms,
RoPE, the Q/K/V/output projections, the SwiGLU MLP, residual adds, the embedding, the LM
head and the loss. :func:`measure_linear` times forward+backward of the executor's
:class:`~fcp_tune.executor.model.Decoder` with the attention core replaced by the identity
on Q (K and V stay in the graph through a zero-weighted sum): the core is profiled block
by block elsewhere. It also times one AdamW step (the executor's optimizer) per parameter.

:func:`activation_bytes_per_token` counts the bytes autograd keeps for backward in one
decoder :class:`~fcp_tune.executor.model.Block` (each storage once, via saved-tensor
hooks) plus what the real attention core keeps (Q, K, V and an fp32 log-sum-exp per head;
its output stands in as the identity's). The cost model carries the number over to
other shapes with :func:`~fcp_tune.profile.flops.activation_formula`.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F

from fcp_tune.modelcfg import ModelConfig

MAX_MEASURED_LAYERS = 4
_DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a ``ModelConfig.dtype`` name."""
    return _DTYPES[name]


def identity_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Stand-in for the attention core: Q itself, with K and V kept in the autograd graph."""
    return q + (k.sum() + v.sum()) * 0.0


def sync_device(device: torch.device) -> None:
    """Wait for queued device work (CUDA); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median wall seconds of ``fn()`` after ``warmup`` untimed calls (device-synchronised)."""
    for _ in range(warmup):
        fn()
    sync_device(device)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        sync_device(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    return times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])


def interleaved_medians(
    fns: Sequence[Callable[[], object]], device: torch.device, warmup: int, repeats: int
) -> list[float]:
    """Median wall seconds of each of ``fns``, sampled in rounds (one call of each per round).

    Interleaving makes a burst of interference from other work on the host spoil one
    sample of every function instead of all samples of one, so differences and fits
    between the functions stay consistent on a shared machine.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    sync_device(device)
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(max(1, repeats)):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            sync_device(device)
            samples[i].append(time.perf_counter() - t0)
    return [statistics.median(x) for x in samples]


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """``y = intercept + slope * x`` minimising the *relative* error, ``intercept >= 0``.

    Relative weights (``1 / y^2``) let the small sizes, where the fixed part shows, count
    as much as the large ones; a negative intercept refits through the origin.
    """
    if len(xs) < 2 or len(set(xs)) < 2:
        return 0.0, sum(ys) / max(sum(xs), 1e-30)
    w = [1.0 / (y * y) for y in ys]
    sw, sx, sy = sum(w), sum(wi * x for wi, x in zip(w, xs)), sum(wi * y for wi, y in zip(w, ys))
    sxx = sum(wi * x * x for wi, x in zip(w, xs))
    sxy = sum(wi * x * y for wi, x, y in zip(w, xs, ys))
    det = sw * sxx - sx * sx
    slope = (sw * sxy - sx * sy) / det
    intercept = (sy - slope * sx) / sw
    if intercept < 0 or slope <= 0:
        return 0.0, sxy / sxx
    return intercept, slope


def measure_linear(model: ModelConfig, tokens: int, device: torch.device, warmup: int, repeats: int) -> dict:
    """Token-linear work of the decoder (fwd + bwd, all layers, LM head, loss): a fixed part and a per-token part.

    The decoder with the identity attention core is timed at ``tokens / 16``, ``/ 4``,
    ``/ 2`` and ``tokens`` tokens (interleaved rounds) and fitted with ``t = wave_s + n *
    seconds_per_token``: ``wave_s`` is what one forward+backward call costs whatever its
    size (Python dispatch and kernel launches of every layer, embedding, LM head and loss;
    the executor pays it once per group a rank joins), ``seconds_per_token`` the marginal
    cost of a token. Returns those, ``flops_per_token`` (``model.linear_flops_per_token()``)
    and ``optimizer_s_per_param``
    (one AdamW step over the same parameters). A model deeper than
    :data:`MAX_MEASURED_LAYERS` is measured on its first layers only (a full 8B model, its
    gradients and AdamW states do not fit one GPU next to the activations): the per-token
    time is scaled by the FLOP ratio, the fixed time by the layer ratio.
    """
    from fcp_tune.executor.model import build_model  # the executor's decoder, imported when measuring

    torch.manual_seed(0)
    measured = replace(model, layers=min(model.layers, MAX_MEASURED_LAYERS))
    net = build_model(measured, seed=0, device=device)
    sizes = sorted({max(1, tokens // 16), max(1, tokens // 4), max(1, tokens // 2), tokens})

    def make_step(n: int) -> Callable[[], None]:
        ids = torch.randint(0, model.vocab_size, (n,), device=device)
        positions = torch.arange(n, device=device)
        targets = torch.randint(0, model.vocab_size, (n,), device=device)

        def step() -> None:
            logits = net(ids, positions, identity_attention)
            F.cross_entropy(logits.float(), targets).backward()

        return step

    times = interleaved_medians([make_step(n) for n in sizes], device, warmup, repeats)
    wave_s, per_token = fit_line(sizes, times)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-6)
    t_opt = median_time(opt.step, device, warmup, repeats)
    n_params = sum(p.numel() for p in net.parameters())
    scale = model.linear_flops_per_token() / measured.linear_flops_per_token()
    return {
        "seconds_per_token": per_token * scale,
        "wave_s": wave_s * model.layers / measured.layers,
        "flops_per_token": model.linear_flops_per_token(),
        "measured_layers": measured.layers,
        "optimizer_s_per_param": t_opt / n_params,
    }


def measure_core_overhead(
    model: ModelConfig, tokens: int, device: torch.device, warmup: int, repeats: int, info: Any = None,
    seqlen: int = 512,
) -> float:
    """Seconds per local token per layer the attention core spends outside kernels and collectives.

    The executor's attention core (``AllGatherAttention``) also packs the gathered K/V,
    merges partial outputs, allocates and accumulates dQ and the group's dK/dV, and
    converts dtypes: token-linear work that neither the block grid (bare kernel calls) nor
    :func:`measure_linear` (identity core) contains, and that grows with the group (the
    K/V-sized buffers hold the whole group's tokens). It is timed on a packed batch of
    ``tokens / seqlen`` causal sequences of ``seqlen`` tokens sharded over ``info``'s group
    (a :class:`~fcp_tune.attention.comm.GroupInfo`; None: this rank alone; every member
    must call), minus the seconds blocked in its collectives, against this rank's blocks
    of the same batch called one by one as the attention grid calls them (interleaved
    rounds); the difference per local token is the overhead (>= 0).
    """
    import functools

    from fcp_tune.attention.allgather import AllGatherAttention
    from fcp_tune.attention.comm import GroupInfo, timed_comm
    from fcp_tune.attention.kernels import block_forward, bound_backward, default_scale
    from fcp_tune.schemes import get_scheme
    from fcp_tune.schemes.layout import shard_layout

    info = info if info is not None else GroupInfo(None, 0, 1)
    length = max(2 * info.size, min(seqlen, tokens))
    count = max(1, tokens // length)
    layout = shard_layout(tuple(range(0, count * length + 1, length)), info.size)
    local = layout.counts[info.rank]
    dt, hd = torch_dtype(model.dtype), model.head_dim
    gen = torch.Generator(device="cpu").manual_seed(info.rank)

    def rnd(rows: int, heads: int) -> torch.Tensor:
        return torch.randn(rows, heads, hd, generator=gen, dtype=torch.float32).to(device=device, dtype=dt)

    q, k, v, dout = rnd(local, model.heads), rnd(local, model.kv_heads), rnd(local, model.kv_heads), rnd(local, model.heads)
    q.requires_grad_(True), k.requires_grad_(True), v.requires_grad_(True)
    scale = default_scale(hd)

    def core() -> float:
        with timed_comm() as comm:
            AllGatherAttention.apply(q, k, v, layout, info, True, scale).backward(dout)
        return comm[0]

    bq, bk, bv, bd = rnd(length, model.heads), rnd(length, model.kv_heads), rnd(length, model.kv_heads), rnd(length, model.heads)
    calls = []
    b = get_scheme("allgather").blocks(shard_layout((0, length), info.size), causal=True)  # one sequence's blocks
    mine = (b.q_len[0, info.rank, 0], b.k_len[0, info.rank, 0], b.causal[0, info.rank, 0])
    for ql, kl, causal in zip(*(x.tolist() for x in mine)):
        if ql and kl:
            args = (bq[:ql], bk[:kl], bv[:kl], [(0, ql)], [(0, kl)], bool(causal), scale)
            o, lse = block_forward(*args)
            calls.append((functools.partial(block_forward, *args),
                          bound_backward(bd[:ql], *args[:3], o, lse, *args[3:])))

    def blocks() -> None:
        for _ in range(count):
            for fwd, bwd in calls:
                fwd()
                bwd()

    for _ in range(max(1, warmup)):
        core()
        blocks()
    t_core, t_blocks = [], []
    for _ in range(max(3, repeats)):
        t0 = time.perf_counter()
        blocked = core()
        sync_device(device)
        t_core.append(time.perf_counter() - t0 - blocked)
        t0 = time.perf_counter()
        blocks()
        sync_device(device)
        t_blocks.append(time.perf_counter() - t0)
    return max(0.0, statistics.median(t_core) - statistics.median(t_blocks)) / max(1, local)


def activation_bytes_per_token(model: ModelConfig, tokens: int = 64) -> float:
    """Bytes one decoder block keeps for backward, per token (see the module docstring)."""
    from fcp_tune.executor.model import Block

    torch.manual_seed(0)
    block = Block(model).to(dtype=torch_dtype(model.dtype))
    params = {p.untyped_storage().data_ptr() for p in block.parameters()}
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            storages[s.data_ptr()] = s.nbytes()
        return t

    x = torch.randn(tokens, model.hidden, dtype=torch_dtype(model.dtype), requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x, torch.arange(tokens), identity_attention)
    kvd = model.kv_heads * model.head_dim
    core = (model.hidden + 2 * kvd) * model.dtype_bytes + 4 * model.heads
    return sum(storages.values()) / tokens + core
