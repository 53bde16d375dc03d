"""Log-sum-exp merging of partial attention results (fp32, or fp64 for fp64 inputs)."""

from __future__ import annotations

import torch


def new_accumulators(rows: int, heads: int, head_dim: int, dtype: torch.dtype, device: torch.device):
    """Zero output ``(rows, H, D)`` and ``-inf`` lse ``(H, rows)`` accumulators."""
    out = torch.zeros(rows, heads, head_dim, dtype=dtype, device=device)
    lse = torch.full((heads, rows), float("-inf"), dtype=dtype, device=device)
    return out, lse


def merge_into(
    acc_out: torch.Tensor,
    acc_lse: torch.Tensor,
    rows: torch.Tensor,
    block_out: torch.Tensor,
    block_lse: torch.Tensor,
) -> None:
    """Merge a block's ``(out, lse)`` for query ``rows`` into the accumulators, in place.

    ``l = logaddexp(lse_acc, lse_b)``; ``out = exp(lse_acc - l) * out_acc + exp(lse_b - l) * out_b``.
    Rows where both are ``-inf`` (no key seen yet) stay zero instead of turning into NaN.
    """
    old_lse = acc_lse.index_select(1, rows)
    b_lse = block_lse.to(acc_lse.dtype)
    new_lse = torch.logaddexp(old_lse, b_lse)
    safe = torch.where(torch.isneginf(new_lse), torch.zeros_like(new_lse), new_lse)
    w_old = torch.exp(old_lse - safe).transpose(0, 1).unsqueeze(-1)
    w_new = torch.exp(b_lse - safe).transpose(0, 1).unsqueeze(-1)
    merged = w_old * acc_out.index_select(0, rows) + w_new * block_out.to(acc_out.dtype)
    acc_out.index_copy_(0, rows, merged)
    acc_lse.index_copy_(1, rows, new_lse)


def ranges_to_rows(ranges, device: torch.device) -> torch.Tensor:
    """Concatenated row indices of a list of ``[start, end)`` ranges."""
    if not ranges:
        return torch.empty(0, dtype=torch.long, device=device)
    return torch.cat([torch.arange(s, e, device=device) for s, e in ranges])
