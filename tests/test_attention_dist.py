"""Distributed parity of cp_attention against the dense float64 reference.

All cases run in one launch of 6 forked gloo processes (one thread each); groups of size
1..6 plus offset groups (global ranks 2-4 and 1-5) check the group-rank mapping. The same
cases run on NCCL, one process per GPU, when two or more GPUs are visible.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from fcp_tune.attention.parity import ParityCase, combine_ranks, parity_rank
from fcp_tune.launch import run_local

from fcp_tune.attention.parity import TOLERANCE as TOL


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


def build_cases(max_world: int) -> list[ParityCase]:
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


def _check(cases, results):
    bad = []
    for case, err in zip(cases, results):
        if not err.worst <= TOL[case.dtype]:
            bad.append(f"{case}: {err}")
    assert not bad, "parity failures:\n" + "\n".join(bad[:20])


@pytest.mark.slow
def test_parity_gloo_group_sizes_1_to_6():
    cases = build_cases(6)
    per_rank = run_local(parity_rank, 6, args=(cases, "cpu"), timeout=180, collective_timeout=60)
    results = combine_ranks(per_rank, len(cases))
    _check(cases, results)
    # the suite must cover every group size, both schemes, both causalities
    assert {len(c.group) for c in cases} == {1, 2, 3, 4, 5, 6}
    assert {(c.scheme, c.causal) for c in cases} == set(itertools.product(("allgather", "ring"), (True, False)))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two or more GPUs")
def test_parity_nccl():
    n = min(torch.cuda.device_count(), 6)
    cases = [c for c in build_cases(n) if c.dtype != "float64" or True]
    per_rank = run_local(parity_rank, n, args=(cases, "cuda"), backend="nccl", timeout=600, collective_timeout=120)
    _check(cases, combine_ranks(per_rank, len(cases)))
