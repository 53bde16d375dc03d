"""Exact context-parallel attention for a group of any size.

>>> from fcp_tune.attention import shard, unshard, cp_attention
>>> q_local = shard(x_global, cu_seqlens, group)
>>> out_local = cp_attention(q_local, k_local, v_local, cu_seqlens, group=group, causal=True, scheme="ring")
>>> x_global = unshard(out_local, cu_seqlens, group)

One file per algorithm (``allgather.py``, ``ring.py``), a tiny comm helper (``comm.py``),
the local kernels (``kernels.py``), the block selection (``blocks.py``) and a dense
float64 reference for checking (``reference.py``).
"""

from fcp_tune.attention.api import SCHEMES, cp_attention, layout_for, shard, unshard

__all__ = ["SCHEMES", "cp_attention", "layout_for", "shard", "unshard"]
