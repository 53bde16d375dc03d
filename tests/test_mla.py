"""MLA head dims: value head dim != query/key head dim, in every scheme, float64 parity.

One launch of 5 forked gloo processes (one thread each) runs groups of size 1..5 for each
scheme, ``Dv < D`` and ``Dv > D``, on a mixed batch and on ``cu_seqlens = [0, 2]`` (ranks
holding no token must still take part). ``run_local``'s timeout bounds a hang.
"""

from __future__ import annotations

import pytest
import torch

from fcp_tune.attention import cp_attention
from fcp_tune.attention.parity import TOLERANCE, combine_ranks, mla_cases, parity_rank
from fcp_tune.attention.reference import reference_attention
from fcp_tune.launch import run_local
from fcp_tune.schemes import SCHEMES


def test_single_process_mla_matches_reference():
    cu = [0, 5, 12]
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(12, 4, 12, dtype=torch.float64, generator=gen, requires_grad=True)
    k = torch.randn(12, 2, 12, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(12, 2, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    for scheme in SCHEMES:
        out = cp_attention(q, k, v, cu, scheme=scheme)
        ref = reference_attention(q, k, v, cu)
        assert out.shape == (12, 4, 8)
        assert float((out - ref).abs().max().detach()) < 1e-12
        g = torch.autograd.grad(out.sum(), (q, k, v))
        gr = torch.autograd.grad(ref.sum(), (q, k, v))
        assert max(float((a - b).abs().max()) for a, b in zip(g, gr)) < 1e-12


@pytest.mark.slow
def test_mla_parity_group_sizes_1_to_5_every_scheme():
    cases = mla_cases(5)
    per_rank = run_local(parity_rank, 5, args=(cases, "cpu"), timeout=180, collective_timeout=60)
    results = combine_ranks(per_rank, len(cases))
    bad = [f"{c}: {e}" for c, e in zip(cases, results) if not e.worst <= TOLERANCE["float64"]]
    assert not bad, "MLA parity failures:\n" + "\n".join(bad[:10])
    assert {(len(c.group), c.scheme) for c in cases} == {(d, s) for d in range(1, 6) for s in SCHEMES}
    assert all(c.v_head_dim != c.head_dim for c in cases)
