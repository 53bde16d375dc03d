"""Context-parallel schemes, torch-free: one layout and one object per scheme, keyed by name.

>>> from fcp_tune.schemes import get_scheme
>>> from fcp_tune.schemes.layout import shard_layout
>>> get_scheme("ring").blocks(shard_layout([0, 100], 4), causal=True).q_len.shape  # (steps, ranks, seqs, slots)
(4, 4, 1, 1)

:mod:`~fcp_tune.schemes.layout` says where each token lives; each scheme module
(``allgather.py``, ``ring.py``, ``ulysses.py``) says which blocks each rank computes, its
collectives, memory and feasible degrees (:class:`~fcp_tune.schemes.base.Scheme`). The
executor (:mod:`fcp_tune.attention`) runs those blocks, the cost model prices them, the
policy validates its scheme name here. Adding a scheme: a module here, its autograd
function in ``fcp_tune/attention/``, one registry line each.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from fcp_tune.schemes.allgather import AllGather
from fcp_tune.schemes.base import Blocks, CommStep, Scheme
from fcp_tune.schemes.ring import Ring
from fcp_tune.schemes.ulysses import Ulysses

REGISTRY: Mapping[str, Scheme] = MappingProxyType({s.name: s for s in (AllGather(), Ring(), Ulysses())})
SCHEMES: tuple[str, ...] = tuple(REGISTRY)
# The scheme every policy, cost model and command uses unless told otherwise.
DEFAULT_SCHEME = "allgather"


def scheme_names() -> str:
    """The registered schemes for help texts: ``allgather, ring or ulysses``."""
    return " or ".join(filter(None, (", ".join(SCHEMES[:-1]), SCHEMES[-1])))


def get_scheme(name: str) -> Scheme:
    """The scheme object named ``name``; ``ValueError`` naming the known ones otherwise."""
    scheme = REGISTRY.get(name) if isinstance(name, str) else None
    if scheme is None:
        raise ValueError(f"unknown scheme {name!r}; expected one of {', '.join(SCHEMES)}")
    return scheme


__all__ = ["Blocks", "CommStep", "DEFAULT_SCHEME", "REGISTRY", "SCHEMES", "Scheme", "get_scheme", "scheme_names"]
