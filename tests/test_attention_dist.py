"""Distributed parity of cp_attention against the dense float64 reference.

All cases run in one launch of 6 forked gloo processes (one thread each); groups of size
1..6 plus offset groups (global ranks 2-4 and 1-5) check the group-rank mapping. The same
cases run on NCCL, one process per GPU, when two or more GPUs are visible.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from fcp_tune.attention.parity import combine_ranks, parity_rank, suite_cases
from fcp_tune.launch import run_local

from fcp_tune.attention.parity import TOLERANCE as TOL


def _check(cases, results):
    bad = []
    for case, err in zip(cases, results):
        if not err.worst <= TOL[case.dtype]:
            bad.append(f"{case}: {err}")
    assert not bad, "parity failures:\n" + "\n".join(bad[:20])


@pytest.mark.slow
def test_parity_gloo_group_sizes_1_to_6():
    cases = suite_cases(6)
    per_rank = run_local(parity_rank, 6, args=(cases, "cpu"), timeout=180, collective_timeout=60)
    results = combine_ranks(per_rank, len(cases))
    _check(cases, results)
    # the suite must cover every group size, both schemes, both causalities
    assert {len(c.group) for c in cases} == {1, 2, 3, 4, 5, 6}
    assert {(c.scheme, c.causal) for c in cases} == set(itertools.product(("allgather", "ring"), (True, False)))


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two or more GPUs")
def test_parity_nccl():
    n = min(torch.cuda.device_count(), 6)
    cases = suite_cases(n)  # every case, float64 included (the matmul kernel runs it on CUDA)
    per_rank = run_local(parity_rank, n, args=(cases, "cuda"), backend="nccl", timeout=600, collective_timeout=120)
    _check(cases, combine_ranks(per_rank, len(cases)))
