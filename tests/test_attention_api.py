"""cp_attention / shard / unshard without a process group (group size 1), and input checks."""

from __future__ import annotations

import pytest
import torch

from fcp_tune.attention import cp_attention, shard, unshard
from fcp_tune.attention.reference import reference_attention
from fcp_tune.schemes import SCHEMES


def _qkv(T, hq=4, hkv=2, d=8, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(T, h, d, generator=g, dtype=dtype) for h in (hq, hkv, hkv)]


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("causal", [True, False])
def test_single_process_matches_reference(scheme, causal):
    cu = [0, 1, 9, 10, 42]
    q, k, v = _qkv(42)
    qs = [t.clone().requires_grad_() for t in (q, k, v)]
    out = cp_attention(*qs, cu, causal=causal, scheme=scheme)
    refs = [t.clone().requires_grad_() for t in (q, k, v)]
    ref = reference_attention(*refs, cu, causal=causal)
    dout = torch.randn_like(ref)
    out.backward(dout)
    ref.backward(dout)
    assert (out - ref).abs().max() <= 1e-12
    for a, b in zip(qs, refs):
        assert (a.grad - b.grad).abs().max() <= 1e-12


def test_causal_differs_from_noncausal():
    cu = [0, 16]
    q, k, v = _qkv(16)
    assert (cp_attention(q, k, v, cu, causal=True) - cp_attention(q, k, v, cu, causal=False)).abs().max() > 1e-3


def test_shard_unshard_identity_single_process():
    x = torch.randn(10, 2, 3)
    cu = torch.tensor([0, 4, 10])
    assert torch.equal(unshard(shard(x, cu), cu), x)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda q, k, v, cu: (q, k, v, [1, 42]), "start at 0"),
        (lambda q, k, v, cu: (q, k, v, [0, 30, 20, 42]), "must not decrease"),
        (lambda q, k, v, cu: (q, k, v, [0, 40]), "gives rank 0"),
        (lambda q, k, v, cu: (q.float(), k, v, cu), "dtypes differ"),
        (lambda q, k, v, cu: (q, k[:, :1], v, cu), "head counts differ"),
        (lambda q, k, v, cu: (q[:, :3], k, v, cu), "multiple of k/v heads"),
        (lambda q, k, v, cu: (q[:, :, :4], k, v, cu), "head dims differ"),
        (lambda q, k, v, cu: (q[0], k, v, cu), r"\(T, H, D\)"),
        (lambda q, k, v, cu: (q, k, v, torch.tensor([0.0, 42.0])), "integers"),
    ],
)
def test_bad_input_raises_value_error(mutate, match):
    q, k, v = _qkv(42)
    args = mutate(q, k, v, [0, 10, 42])
    with pytest.raises(ValueError, match=match):
        cp_attention(*args)


def test_unknown_scheme():
    q, k, v = _qkv(4)
    with pytest.raises(ValueError, match="unknown scheme 'nope'; expected one of allgather, ring, ulysses"):
        cp_attention(q, k, v, [0, 4], scheme="nope")


def test_every_scheme_has_an_autograd_function():
    from fcp_tune.attention.api import FUNCTIONS

    assert set(FUNCTIONS) == set(SCHEMES)


def test_shard_checks_total():
    with pytest.raises(ValueError, match="ends at 5"):
        shard(torch.zeros(6, 1, 1), [0, 5])
