"""The one vectorised layout (fcp_tune.schemes.layout): chunk boundaries, loads, shards; no process group."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fcp_tune.schemes.layout import (
    chunk_bounds,
    fits,
    max_tokens_per_rank,
    rank_loads,
    rule_capacity,
    rule_sizes,
    shard_layout,
    surely_fits,
    tokens_per_rank,
    validate_cu_seqlens,
)


def test_chunk_bounds_examples():
    assert chunk_bounds(8, 2).tolist() == [0, 2, 4, 6, 8]
    assert chunk_bounds(7, 3).tolist() == [0, 1, 2, 3, 4, 5, 7]
    assert chunk_bounds(1, 3).tolist() == [0, 0, 0, 0, 0, 0, 1]
    assert chunk_bounds(0, 2).tolist() == [0, 0, 0, 0, 0]
    assert chunk_bounds([8, 7], 2).tolist() == [[0, 2, 4, 6, 8], [0, 1, 3, 5, 7]]  # many sequences at once


def test_zigzag_assignment():
    # d=3, L=12: chunks of 2; rank 0 holds chunks 0 and 5, rank 2 holds 2 and 3
    shards = shard_layout([0, 12], 3).shards
    assert shards[0][0].early == (0, 2) and shards[0][0].late == (10, 12)
    assert shards[2][0].early == (4, 6) and shards[2][0].late == (6, 8)
    assert tokens_per_rank(12, 3).tolist() == [4, 4, 4]
    assert tokens_per_rank(1, 2).tolist() == [1, 0]  # L < 2d: a rank may hold nothing


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=0, max_size=8), st.integers(1, 7))
def test_layout_is_a_partition(seqlens, d):
    cu = [0]
    for n in seqlens:
        cu.append(cu[-1] + n)
    layout = shard_layout(cu, d)
    everything = sorted(i for r in range(d) for i in layout.global_indices(r).tolist())
    assert everything == list(range(cu[-1]))
    assert sum(layout.counts) == cu[-1]
    for L in seqlens:
        per = tokens_per_rank(L, d)
        assert max(per) - min(per) <= 2  # balanced within rounding
        b = chunk_bounds(L, d)
        assert all(b[i] <= b[i + 1] for i in range(2 * d)) and b[0] == 0 and b[-1] == L
        # the rows a rank holds: chunk i then chunk 2d-1-i
        for r in range(d):
            assert per[r] == (b[r + 1] - b[r]) + (b[2 * d - r] - b[2 * d - 1 - r])
    assert max_tokens_per_rank(seqlens, d) == (max(layout.counts) if layout.counts else 0)
    assert rank_loads(seqlens, d).tolist() == list(layout.counts)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=6), st.integers(1, 9), st.integers(1, 300))
def test_sufficient_memory_rule_implies_the_exact_check(seqlens, d, budget):
    lengths = np.asarray(seqlens)
    total = int(rule_sizes(lengths, d).sum())
    assert surely_fits(int(lengths.sum()), len(seqlens), d, budget) == (total <= rule_capacity(d, budget))
    if total <= rule_capacity(d, budget):
        assert fits(seqlens, d, budget)
    assert fits(seqlens, d, budget) == (max_tokens_per_rank(seqlens, d) <= budget)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 30), min_size=1, max_size=6), st.integers(1, 6))
def test_shard_unshard_roundtrip_without_group(seqlens, d):
    """Reassembling every rank's shard by the layout's indices gives back the packed tensor."""
    cu = [0]
    for n in seqlens:
        cu.append(cu[-1] + n)
    x = torch.arange(cu[-1] * 3, dtype=torch.float64).reshape(cu[-1], 3)
    layout = shard_layout(cu, d)
    back = torch.empty_like(x)
    for r in range(d):
        idx = torch.from_numpy(layout.global_indices(r))
        back[idx] = x[idx]
        # local order: each sequence's early chunk then late chunk, positions increasing
        for s, sh in enumerate(layout.shards[r]):
            assert sh.early[1] <= sh.late[0] or sh.late[1] == sh.late[0]
    assert torch.equal(back, x)


@pytest.mark.parametrize(
    "cu, total, match",
    [
        ([1, 3], None, "start at 0"),
        ([0, 5, 3], None, "must not decrease"),
        ([0, 5], 6, "ends at 5"),
        ([], None, "at least one"),
    ],
)
def test_validate_cu_seqlens(cu, total, match):
    with pytest.raises(ValueError, match=match):
        validate_cu_seqlens(cu, total)


def test_bad_degree():
    with pytest.raises(ValueError, match="degree"):
        chunk_bounds(4, 0)
    with pytest.raises(ValueError, match="rank"):
        shard_layout([0, 4], 2).global_indices(2)
    with pytest.raises(ValueError, match="lengths must be >= 0"):
        chunk_bounds([-1], 2)
