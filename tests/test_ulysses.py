"""Ulysses attention: float64 parity for every group size 1..6 and the head-count degree rule.

One launch of 6 forked gloo processes (one thread each) runs every case of
:func:`fcp_tune.attention.parity.ulysses_cases` and tries the degrees the rule forbids.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from fcp_tune.attention import cp_attention, shard
from fcp_tune.attention.parity import TOLERANCE, combine_ranks, parity_rank, ulysses_cases
from fcp_tune.launch import run_local
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.schemes import get_scheme

WORLD = 6
# H_q = 12, H_kv = 6: degrees 1, 2, 3, 6 run, 4 and 5 do not divide H_kv.
REJECTED = (4, 5)


def _rank(rank: int, world: int, cases):
    results = parity_rank(rank, world, cases)
    errors = {}
    for d in REJECTED:
        group = dist.new_group(list(range(d)))
        if rank < d:
            cu = [0, 10]
            x = [torch.zeros(10, h, 4, dtype=torch.float64) for h in (12, 6, 6)]
            try:
                cp_attention(*(shard(t, cu, group) for t in x), cu, group=group, scheme="ulysses")
            except ValueError as e:
                errors[d] = str(e)
    return results, errors


def test_ulysses_parity_every_feasible_degree_and_rejects_the_rest():
    cases = ulysses_cases(WORLD)
    out = run_local(_rank, WORLD, args=(cases,), timeout=120, collective_timeout=60)
    results = combine_ranks([r for r, _ in out], len(cases))
    bad = [f"{c}: {e}" for c, e in zip(cases, results) if not e.worst <= TOLERANCE[c.dtype]]
    assert not bad, "parity failures:\n" + "\n".join(bad[:20])
    assert {len(c.group) for c in cases} == set(range(1, WORLD + 1))
    assert {(c.causal, c.heads == c.kv_heads) for c in cases} == {(a, b) for a in (True, False) for b in (True, False)}
    for rank, (_, errors) in enumerate(out):
        want = {d for d in REJECTED if rank < d}
        assert set(errors) == want
        for d in want:
            assert f"degree {d} must divide the K/V head count 6" in errors[d]


def test_degree_rule_names_the_rule():
    ulysses = get_scheme("ulysses")
    model = ModelConfig(hidden=96, heads=12, kv_heads=6, ffn_hidden=64)
    assert ulysses.feasible_degrees(model, 8) == (1, 2, 3, 6)
    assert get_scheme("ring").feasible_degrees(model, 8) == tuple(range(1, 9))
    with pytest.raises(ValueError, match="scheme ulysses: degree 4 must divide the K/V head count 6"):
        ulysses.check_degree(4, 12, 6)
    ulysses.check_degree(3, 12, 6)

