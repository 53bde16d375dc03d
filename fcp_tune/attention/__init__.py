"""Exact context-parallel attention for a group of any size.

>>> from fcp_tune.attention import shard, unshard, cp_attention
>>> q_local = shard(x_global, cu_seqlens, group)
>>> out_local = cp_attention(q_local, k_local, v_local, cu_seqlens, group=group, causal=True, scheme="ring")
>>> x_global = unshard(out_local, cu_seqlens, group)

One file per algorithm (``allgather.py``, ``ring.py``, ``ulysses.py``; each runs the blocks of
its torch-free scheme object in :mod:`fcp_tune.schemes`), a tiny comm helper (``comm.py``),
the local kernels (``kernels.py``), the block selection (``blocks.py``) and a dense
float64 reference for checking (``reference.py``).
"""

from fcp_tune.attention.api import cp_attention, layout_for, shard, unshard
from fcp_tune.attention.comm import WORLD
from fcp_tune.schemes import SCHEMES

__all__ = ["SCHEMES", "WORLD", "cp_attention", "layout_for", "shard", "unshard"]
