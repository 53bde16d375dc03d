"""Parity checks of ``cp_attention`` against the dense float64 reference, run on every rank.

Each :class:`ParityCase` names a group of global ranks, a batch of sequence lengths, a
scheme, causality and a dtype. Every rank builds the same seeded global tensors, computes
the reference (float64, on inputs rounded to the case's dtype), runs its shard through
``cp_attention`` forward and backward, and reports the largest scaled absolute error
(``max |x - ref| / max(1, max |ref|)``) of the output and of dq, dk, dv on its share. Used by the tests and by ``fcp-tune demo``.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist

from fcp_tune.attention.api import cp_attention, shard
from fcp_tune.attention.reference import reference_attention
from fcp_tune.schemes import SCHEMES, get_scheme
from fcp_tune.schemes import DEFAULT_SCHEME

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class ParityCase:
    """One parity check: a group of global ranks running one packed batch."""

    group: tuple[int, ...]
    seqlens: tuple[int, ...]
    scheme: str = DEFAULT_SCHEME
    causal: bool = True
    dtype: str = "float64"
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 8
    seed: int = 0
    v_head_dim: int = 0  # value head dim; 0: same as head_dim (MLA uses e.g. 192/128)


@dataclass(frozen=True)
class ParityError:
    """Largest absolute errors of one case on one rank (or the max over ranks)."""

    out: float
    dq: float
    dk: float
    dv: float

    @property
    def worst(self) -> float:
        return max(self.out, self.dq, self.dk, self.dv)

    def combine(self, other: "ParityError") -> "ParityError":
        return ParityError(*(max(a, b) for a, b in zip(asdict(self).values(), asdict(other).values())))


def _global_tensors(case: ParityCase):
    total = sum(case.seqlens)
    gen = torch.Generator().manual_seed(case.seed)
    dtype = DTYPES[case.dtype]

    dv = case.v_head_dim or case.head_dim

    def rnd(h: int, dim: int) -> torch.Tensor:
        # Round to the case dtype first so the float64 reference sees the same inputs.
        return torch.randn(total, h, dim, generator=gen, dtype=torch.float64).to(dtype).double()

    return rnd(case.heads, case.head_dim), rnd(case.kv_heads, case.head_dim), rnd(case.kv_heads, dv), rnd(case.heads, dv)


def check_case(case: ParityCase, group, device: torch.device) -> ParityError:
    """Run one case on this rank (a member of ``group``) and return its errors."""
    cu = [0]
    for length in case.seqlens:
        cu.append(cu[-1] + length)
    q, k, v, dout = _global_tensors(case)
    ref_in = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = reference_attention(*ref_in, cu, causal=case.causal)
    ref.backward(dout)
    dtype = DTYPES[case.dtype]
    local = [shard(t, cu, group).to(device=device, dtype=dtype).requires_grad_() for t in (q, k, v)]
    out = cp_attention(*local, cu, group=group, causal=case.causal, scheme=case.scheme)
    out.backward(shard(dout, cu, group).to(device=device, dtype=dtype))

    def err(mine: torch.Tensor, full: torch.Tensor) -> float:
        # scaled absolute error: max |x - ref| / max(1, max |ref|) over the whole reference
        expect = shard(full.detach(), cu, group)
        if not expect.numel():
            return 0.0
        scale = max(1.0, float(full.detach().abs().max()))
        return float((mine.detach().double().cpu() - expect).abs().max()) / scale

    return ParityError(
        out=err(out, ref),
        dq=err(local[0].grad, ref_in[0].grad),
        dk=err(local[1].grad, ref_in[1].grad),
        dv=err(local[2].grad, ref_in[2].grad),
    )


def parity_rank(rank: int, world_size: int, cases: list[ParityCase], device_type: str = "cpu") -> dict[int, ParityError]:
    """Entry point for each rank: create every case's group (all ranks, one order), run its cases."""
    device = torch.device(device_type, torch.cuda.current_device()) if device_type == "cuda" else torch.device("cpu")
    groups = {}
    for members in sorted({c.group for c in cases}, key=lambda g: (len(g), g)):
        if max(members) >= world_size:
            raise ValueError(f"case group {members} needs more than {world_size} ranks")
        groups[members] = dist.new_group(list(members))
    results: dict[int, ParityError] = {}
    for i, case in enumerate(cases):
        if rank in case.group:
            results[i] = check_case(case, groups[case.group], device)
    return results


def combine_ranks(per_rank: list[dict[int, ParityError]], n_cases: int) -> list[ParityError]:
    """Max over ranks of each case's errors."""
    out: list[ParityError | None] = [None] * n_cases
    for res in per_rank:
        for i, e in res.items():
            out[i] = e if out[i] is None else out[i].combine(e)
    missing = [i for i, e in enumerate(out) if e is None]
    if missing:
        raise RuntimeError(f"no rank reported cases {missing}")
    return out  # type: ignore[return-value]


# Largest absolute error accepted against the float64 reference, per dtype (see docs/ATTENTION.md).
TOLERANCE = {"float64": 1e-10, "float32": 1e-5, "bfloat16": 2e-2, "float16": 4e-3}


def demo_cases(nproc: int) -> list[ParityCase]:
    """A mixed variable-length batch on a group of ``nproc`` ranks, every scheme, both masks."""
    d = nproc
    seqlens = (1, 2, 2 * d - 1, 2 * d + 1, 37, 300)
    cases = []
    for scheme in (s for s in SCHEMES if get_scheme(s).degree_error(d, 8, 2) is None):
        for causal in (True, False):
            for dtype in ("float64", "float32", "bfloat16"):
                cases.append(ParityCase(tuple(range(d)), seqlens, scheme, causal, dtype, heads=8, kv_heads=2, head_dim=16))
    return cases


def run_parity(cases: list[ParityCase], nproc: int, backend: str = "gloo", timeout: float = 300.0) -> list[ParityError]:
    """Run ``cases`` on ``nproc`` fresh local processes; max error over ranks per case."""
    from fcp_tune.launch import run_local

    device = "cuda" if backend == "nccl" else "cpu"
    per_rank = run_local(parity_rank, nproc, args=(cases, device), backend=backend, timeout=timeout)
    return combine_ranks(per_rank, len(cases))


def _lengths(d: int) -> list[tuple[int, ...]]:
    return [
        (1,),
        (2,),
        (2 * d - 1,),
        (2 * d + 1,),
        (7, 13, 31),
        (97, 3, 5, 2),  # one sequence dominates
        (1, 2, 2 * d - 1, 2 * d + 1, 17),
    ]


def suite_cases(max_world: int) -> list[ParityCase]:
    """The test suite's cases: group sizes 1..6 (and offset groups), both schemes, masks, dtypes."""
    cases = []
    groups = [tuple(range(d)) for d in range(1, min(6, max_world) + 1)]
    if max_world >= 5:
        groups.append((2, 3, 4))
    if max_world >= 6:
        groups.append((1, 2, 3, 4, 5))
    for g in groups:
        d = len(g)
        for lens, scheme, causal, dtype in itertools.product(
            _lengths(d), ("allgather", "ring"), (True, False), ("float64", "float32")
        ):
            cases.append(ParityCase(g, lens, scheme, causal, dtype, seed=len(cases)))
        # MHA (no GQA) and bfloat16 on a mixed batch
        for scheme in ("allgather", "ring"):
            cases.append(ParityCase(g, (5, 2 * d + 1, 40), scheme, True, "float64", heads=4, kv_heads=4, seed=len(cases)))
            cases.append(ParityCase(g, (5, 2 * d + 1, 40), scheme, True, "bfloat16", seed=len(cases)))
            cases.append(ParityCase(g, (3, 64), scheme, True, "float32", heads=8, kv_heads=1, seed=len(cases)))
    return cases


def ulysses_cases(max_world: int) -> list[ParityCase]:
    """Ulysses on every group size ``d <= min(6, max_world)``: head counts ``d`` divides.

    Per ``d``: GQA (``H_q = 2 H_kv``, ``H_kv = d``) and MHA (``H_q = H_kv = d``; for ``d = 1``
    ``8:1`` GQA too), causal and not, float64, on a batch with short sequences and a dominant
    one; a batch where some ranks hold no token at all; float32 on a mixed batch; an offset
    group (the last ``d`` global ranks).
    """
    cases = []
    for d in range(1, min(6, max_world) + 1):
        g = tuple(range(d))
        heads = [(2 * d, d), (d, d)] + ([(8, 1)] if d == 1 else [])
        for (hq, hkv), causal in itertools.product(heads, (True, False)):
            cases.append(ParityCase(g, (1, 2, 2 * d + 1, 97, 7), "ulysses", causal, "float64", heads=hq, kv_heads=hkv,
                                    seed=len(cases)))
        cases.append(ParityCase(g, (1, 2), "ulysses", True, "float64", heads=2 * d, kv_heads=d, seed=len(cases)))
        cases.append(ParityCase(g, (5, 2 * d + 1, 40), "ulysses", True, "float32", heads=2 * d, kv_heads=d, seed=len(cases)))
        if d < max_world:
            off = tuple(range(max_world - d, max_world))
            cases.append(ParityCase(off, (3, 2 * d - 1, 29), "ulysses", True, "float64", heads=2 * d, kv_heads=d, seed=len(cases)))
    return cases


def mla_cases(max_world: int) -> list[ParityCase]:
    """Value head dim != query/key head dim (MLA) in every scheme, group sizes ``1..max_world``.

    Per size ``d`` and scheme: ``Dv < D`` and ``Dv > D``, causal, float64, on a mixed batch and
    on ``cu_seqlens = [0, 2]`` (ranks holding no token); Ulysses with ``H_kv = d``.
    """
    cases = []
    for d in range(1, max_world + 1):
        g = tuple(range(d))
        for scheme, (dqk, dv), lens in itertools.product(SCHEMES, ((12, 8), (6, 10)), ((2,), (1, 2 * d + 1, 23))):
            hkv = d if scheme == "ulysses" else 2
            cases.append(ParityCase(g, lens, scheme, True, "float64", heads=2 * hkv, kv_heads=hkv, head_dim=dqk,
                                    v_head_dim=dv, seed=len(cases)))
    return cases
