"""Context-parallel degree policies: which group size each sequence gets, and their YAML form.

A :class:`Policy` answers one question per sequence, "how many ranks must (or should)
process it?", and carries the two limits every plan honours: the world size ``N`` and the
per-rank ``token_budget`` (the most tokens one rank may hold in one wave, a memory limit).
Five kinds, from the baselines to the method fcp-tune implements (each is one entry of
:data:`fcp_tune.policy_kinds.KINDS`: its degree rule, its planner):

- ``megatron``: Megatron-LM static CP as its users run it: one CP degree dividing N
  (DP = N / CP), sequences padded to a multiple of ``2 * degree`` and packed first fit, in
  arrival order, into micro-batches of ``degree * token_budget`` tokens;
- ``static``: one CP degree for every sequence, planned by fcp-tune's cost-balanced
  static planner (a stronger baseline than Megatron-LM's token packing);
- ``pow2``: ``ceil_pow2(min_degree(L))`` (Megatron-Core dynamic CP: powers of two only).
- ``thresholds``: a length lookup table (``boundaries`` / ``degrees``), any integer degrees;
  typically tuned offline for one workload.
- ``adaptive``: the FCP planner decides per batch; :meth:`Policy.degree_for` is the memory
  minimum and the planner may give a sequence more ranks.

The file layout (``schema: fcp-tune/policy``, ``schema_version: 1``) is documented in
``docs/POLICIES.md``. Every bad value raises :class:`~fcp_tune.errors.FcpTuneError`
naming the field, at construction time, so a bad file fails on load rather than mid-run.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from fcp_tune.errors import FcpTuneError
from fcp_tune.fileio import check_document, read_document, write_yaml
from fcp_tune.schemes import SCHEMES
from fcp_tune.schemes.layout import tokens_per_rank
from fcp_tune.policy_kinds import KINDS, ceil_pow2, kind_of  # noqa: F401 (ceil_pow2 re-exported)

POLICY_SCHEMA = "fcp-tune/policy"
POLICY_SCHEMA_VERSIONS = (1,)
POLICY_KINDS = tuple(KINDS)
# Adaptive plans' group vocabulary (fcp_tune.planner.vocab and docs/POLICIES.md): at most 24
# communicators per rank (<= 16.5 GB even if all were created, at NCCL's ~688 MB each on
# A100; created lazily, plans use far fewer), nodes of 8 GPUs.
DEFAULT_MAX_COMMUNICATORS = 24
DEFAULT_GPUS_PER_NODE = 8

_TOP_KEYS = (
    "schema",
    "schema_version",
    "kind",
    "world_size",
    "token_budget",
    "scheme",
    "degree",
    "thresholds",
    "max_communicators",
    "gpus_per_node",
    "metadata",
)


def min_degree_for(seqlen: int, token_budget: int) -> int:
    """Fewest ranks whose zigzag shards of a ``seqlen`` sequence hold <= ``token_budget`` each.

    This is ``ceil(seqlen / token_budget)`` for every even budget (provably: a rank holds
    two chunks of at most ``budget/2`` tokens each). With an odd budget the exact chunking
    of :mod:`fcp_tune.schemes.layout` can put ``budget + 1`` tokens on one rank at that degree;
    one more rank then suffices (a few more if the budget is below the degree). Using the
    exact rule keeps the planner's memory check and
    :meth:`Plan.validate <fcp_tune.planner.Plan.validate>` in agreement.
    """
    if seqlen < 1:
        return 1
    d = -(-seqlen // token_budget)
    if token_budget % 2 == 0:
        return d
    while max(tokens_per_rank(seqlen, d)) > token_budget:
        d += 1
    return d


def fitting_degree(
    seqlen: int, degree: int, token_budget: int, pow2: bool = False, limit: int | None = None
) -> int:
    """``degree``, or the next degree (power of two if ``pow2``) whose zigzag shards fit.

    A rank holds fewer than ``seqlen/degree + 2`` tokens and, for an even budget, never more
    than the budget once ``degree >= seqlen/budget``; only an odd budget with
    ``seqlen > degree * (budget - 1)`` needs the exact check (in practice: budgets smaller
    than the degree). The search stops at the first degree above ``limit`` (a larger degree
    need not fit either), which the caller then rejects.
    """
    if token_budget % 2 == 0 or seqlen <= degree * (token_budget - 1):
        return degree
    top = limit if limit is not None else max(seqlen, degree)
    while degree <= top and max(tokens_per_rank(seqlen, degree)) > token_budget:
        degree = degree * 2 if pow2 else degree + 1
    return degree


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) or (
        type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "iu"
    )


def _int_field(name: str, value: Any, source: str, minimum: int | None = None) -> int:
    if not _is_int(value):
        raise FcpTuneError(f"{source}: field '{name}' must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise FcpTuneError(f"{source}: field '{name}' must be >= {minimum}, got {value}")
    return value


def _plain(value: Any) -> Any:
    """A YAML-safe deep copy: mappings to dicts, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if _is_int(value):
        return int(value)
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    return value


@dataclass(frozen=True)
class Policy:
    """How many ranks each sequence gets; see the module docstring for the kinds.

    ``degree`` is for ``static`` only; ``boundaries``/``degrees`` for ``thresholds`` only
    (``L <= boundaries[0]`` gets ``degrees[0]``, ..., ``L > boundaries[-1]`` gets
    ``degrees[-1]``). ``metadata`` is free-form provenance, kept out of equality.
    """

    kind: str
    world_size: int
    token_budget: int
    scheme: str = "allgather"
    degree: int | None = None
    boundaries: tuple[int, ...] = ()
    degrees: tuple[int, ...] = ()
    # Adaptive plans use only the group vocabulary (fcp_tune.planner.vocab): node-aligned
    # groups, at most max_communicators per rank (0: no cap, every contiguous range).
    max_communicators: int = DEFAULT_MAX_COMMUNICATORS
    gpus_per_node: int = DEFAULT_GPUS_PER_NODE
    metadata: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        self._check("<policy>")

    def _check(self, source: str) -> None:
        """Validate and normalise every field (tuples, plain ints, read-only metadata)."""
        put = object.__setattr__
        if not isinstance(self.kind, str) or self.kind not in POLICY_KINDS:
            raise FcpTuneError(
                f"{source}: field 'kind' must be one of {', '.join(POLICY_KINDS)}, got {self.kind!r}"
            )
        put(self, "world_size", _int_field("world_size", self.world_size, source, 1))
        put(self, "token_budget", _int_field("token_budget", self.token_budget, source, 1))
        put(self, "max_communicators", _int_field("max_communicators", self.max_communicators, source, 0))
        put(self, "gpus_per_node", _int_field("gpus_per_node", self.gpus_per_node, source, 1))
        if not isinstance(self.scheme, str) or self.scheme not in SCHEMES:
            raise FcpTuneError(
                f"{source}: field 'scheme' must be one of {', '.join(SCHEMES)}, got {self.scheme!r}"
            )
        n = self.world_size
        rule = kind_of(self.kind)
        if rule.takes_degree:
            if self.degree is None:
                raise FcpTuneError(f"{source}: field 'degree' is required for kind {self.kind}")
            d = _int_field("degree", self.degree, source)
            if not 1 <= d <= n:
                raise FcpTuneError(f"{source}: field 'degree' must be in 1..{n} (world_size), got {d}")
            if rule.degree_divides_world and n % d:
                raise FcpTuneError(
                    f"{source}: field 'degree' must divide world_size {n} for kind {self.kind} "
                    f"(DP = N / CP), got {d}"
                )
            put(self, "degree", d)
        elif self.degree is not None:
            takers = ", ".join(k for k, r in KINDS.items() if r.takes_degree)
            raise FcpTuneError(f"{source}: field 'degree' is only for kinds {takers}, not {self.kind}")
        if not isinstance(self.boundaries, (tuple, list)) or not isinstance(self.degrees, (tuple, list)):
            raise FcpTuneError(f"{source}: fields 'boundaries' and 'degrees' must be sequences of integers")
        bounds = tuple(_int_field("boundaries", b, source) for b in self.boundaries)
        degs = tuple(_int_field("degrees", d, source) for d in self.degrees)
        if self.kind == "thresholds":
            if any(b < 1 for b in bounds):
                raise FcpTuneError(f"{source}: field 'boundaries' must be positive, got {list(bounds)}")
            if any(b2 <= b1 for b1, b2 in zip(bounds, bounds[1:])):
                raise FcpTuneError(
                    f"{source}: field 'boundaries' must be strictly increasing, got {list(bounds)}"
                )
            if len(degs) != len(bounds) + 1:
                raise FcpTuneError(
                    f"{source}: field 'degrees' needs len(boundaries)+1 = {len(bounds) + 1} "
                    f"entries, got {len(degs)}"
                )
            for d in degs:
                if not 1 <= d <= n:
                    raise FcpTuneError(
                        f"{source}: field 'degrees' entries must be in 1..{n} (world_size), got {d}"
                    )
        elif bounds or degs:
            raise FcpTuneError(
                f"{source}: fields 'boundaries'/'degrees' (thresholds) are only for kind thresholds, "
                f"not {self.kind}"
            )
        put(self, "boundaries", bounds)
        put(self, "degrees", degs)
        if not isinstance(self.metadata, Mapping):
            got = type(self.metadata).__name__
            raise FcpTuneError(f"{source}: field 'metadata' must be a mapping, got {got}")
        put(self, "metadata", dict(self.metadata))  # a private copy (a plain dict pickles)

    # ------------------------------------------------------------------ degrees
    def min_degree(self, seqlen: int) -> int:
        """The memory minimum: fewest ranks holding <= ``token_budget`` tokens each (>= 1).

        ``ceil(seqlen / token_budget)``, one more for a few lengths when the budget is odd
        (see :func:`min_degree_for`).
        """
        return min_degree_for(int(seqlen), self.token_budget)

    def degree_for(self, seqlen: int) -> int:
        """The group size this policy gives a sequence of ``seqlen`` tokens.

        static: ``degree``; pow2: ``ceil_pow2(min_degree)``; thresholds: the table lookup;
        adaptive: ``min_degree`` (the planner may give more). A static or thresholds degree
        below the memory minimum is raised to ``min_degree`` (such a sequence would not fit
        otherwise). With a tiny odd budget (below the degree) a degree above the minimum can
        put ``budget + 1`` tokens on a rank; it is then raised to the next degree (pow2: power
        of two) that fits. Raises ``ValueError`` naming the length when the result exceeds
        ``world_size``: the sequence does not fit ``world_size x token_budget``, or (pow2)
        its power of two does not fit the world.
        """
        m = self.min_degree(seqlen)
        rule = kind_of(self.kind)
        d = int(rule.wanted(self, np.array([int(seqlen)], dtype=np.int64), np.array([m], dtype=np.int64))[0])
        if d < m and not rule.raise_to_min:
            raise FcpTuneError(
                f"sequence of length {seqlen} does not fit {self.kind} degree {d}: it needs {m} ranks at "
                f"token_budget {self.token_budget} (set a larger degree)"
            )
        d = max(d, m)
        wanted = d
        if d > m:
            d = fitting_degree(int(seqlen), d, self.token_budget, rule.pow2, self.world_size)
        if d > self.world_size:
            if m > self.world_size:
                why = f"it needs {m} ranks at token_budget {self.token_budget}"
            elif rule.pow2 and wanted > self.world_size:
                why = f"its power-of-two degree {wanted} exceeds it"
            else:
                why = (
                    f"its {self.kind} degree {wanted} puts more than token_budget {self.token_budget} "
                    f"tokens on a rank and no larger degree up to {self.world_size} fits"
                )
            raise FcpTuneError(
                f"sequence of length {seqlen} does not fit world_size {self.world_size}: {why}"
            )
        return d

    def possible_degrees(self, max_seqlen: int | None = None) -> tuple[int, ...]:
        """Every value :meth:`degree_for` can return for a length in ``1..max_seqlen``, sorted.

        ``max_seqlen`` defaults to ``world_size * token_budget`` (every length that can fit).
        Used to enumerate the communicators a fixed-degree policy can ever need.
        """
        n, b = self.world_size, self.token_budget
        top = n * b if max_seqlen is None else max(1, min(int(max_seqlen), n * b))
        max_m = min_degree_for(top, b)  # min degree is non-decreasing in the length
        out: set[int] = set()
        if b % 2 and b <= n and kind_of(self.kind).aligned and top <= 2_000:
            # Tiny odd budget: a raised degree may skip to the next that fits; enumerate.
            for length in range(1, top + 1):
                try:
                    out.add(self.degree_for(length))
                except ValueError:
                    pass
            return tuple(sorted(out))
        out.update(d for d in kind_of(self.kind).possible(self, top, max_m) if d <= n)
        if b % 2 and b <= n and out:  # too many lengths to enumerate: a superset will do
            if kind_of(self.kind).pow2:
                out.update(1 << k for k in range(n.bit_length()))
            else:
                out.update(range(min(out), n + 1))
        return tuple(sorted(out))

    def with_world_size(self, world_size: int) -> "Policy":
        """A copy for another world size (for simulations); degrees must still fit it."""
        return dataclasses.replace(self, world_size=world_size, metadata=dict(self.metadata))

    # ------------------------------------------------------------------ (de)serialise
    def to_dict(self) -> dict[str, Any]:
        """The YAML document form (see ``docs/POLICIES.md``)."""
        out: dict[str, Any] = {
            "schema": POLICY_SCHEMA,
            "schema_version": POLICY_SCHEMA_VERSIONS[-1],
            "kind": self.kind,
            "world_size": self.world_size,
            "token_budget": self.token_budget,
            "scheme": self.scheme,
        }
        if kind_of(self.kind).takes_degree:
            out["degree"] = self.degree
        if self.kind == "thresholds":
            maxes: list[int | None] = list(self.boundaries) + [None]
            out["thresholds"] = [{"max_len": m, "degree": d} for m, d in zip(maxes, self.degrees)]
        if (self.max_communicators, self.gpus_per_node) != (DEFAULT_MAX_COMMUNICATORS, DEFAULT_GPUS_PER_NODE):
            out["max_communicators"] = self.max_communicators
            out["gpus_per_node"] = self.gpus_per_node
        out["metadata"] = _plain(self.metadata)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<policy>") -> "Policy":
        """Build a policy from its document form; every problem names ``source`` and the field.

        ``schema``/``schema_version`` are checked when present (always, via
        :func:`load_policy`); a bare mapping without them is accepted for embedding.
        """
        if not isinstance(d, Mapping):
            raise FcpTuneError(f"{source}: expected a mapping, got {type(d).__name__}")
        unknown = [str(k) for k in d if k not in _TOP_KEYS]
        if unknown:
            raise FcpTuneError(
                f"{source}: unknown field(s) {', '.join(repr(k) for k in unknown)} "
                f"(known: {', '.join(_TOP_KEYS)})"
            )
        if "schema" in d or "schema_version" in d:
            check_document(dict(d), POLICY_SCHEMA, POLICY_SCHEMA_VERSIONS, source=source)
        for key in ("kind", "world_size", "token_budget"):
            if key not in d:
                raise FcpTuneError(f"{source}: field '{key}' is required")
        kind = d["kind"]
        boundaries: list[Any] = []
        degrees: list[Any] = []
        if "thresholds" in d:
            if kind != "thresholds":
                raise FcpTuneError(f"{source}: field 'thresholds' is only for kind thresholds, not {kind!r}")
            boundaries, degrees = _parse_thresholds(d["thresholds"], source)
        elif kind == "thresholds":
            raise FcpTuneError(f"{source}: field 'thresholds' is required for kind thresholds")
        metadata = d.get("metadata")
        if metadata is None:
            metadata = {}
        policy = cls.__new__(cls)
        values = {
            "kind": kind,
            "world_size": d["world_size"],
            "token_budget": d["token_budget"],
            "scheme": d.get("scheme", "allgather"),
            "degree": d.get("degree"),
            "boundaries": tuple(boundaries),
            "degrees": tuple(degrees),
            "max_communicators": d.get("max_communicators", DEFAULT_MAX_COMMUNICATORS),
            "gpus_per_node": d.get("gpus_per_node", DEFAULT_GPUS_PER_NODE),
            "metadata": metadata,
        }
        for key, value in values.items():
            object.__setattr__(policy, key, value)
        policy._check(source)
        return policy


def _parse_thresholds(rows: Any, source: str) -> tuple[list[int], list[int]]:
    """``[{max_len, degree}, ..., {max_len: null, degree}]`` -> (boundaries, degrees)."""
    if not isinstance(rows, list) or not rows:
        raise FcpTuneError(f"{source}: field 'thresholds' must be a non-empty list of {{max_len, degree}}")
    boundaries: list[int] = []
    degrees: list[int] = []
    for i, row in enumerate(rows):
        where = f"thresholds[{i}]"
        if not isinstance(row, Mapping):
            raise FcpTuneError(
                f"{source}: field '{where}' must be a mapping {{max_len, degree}}, got {row!r}"
            )
        extra = [str(k) for k in row if k not in ("max_len", "degree")]
        if extra or "degree" not in row or "max_len" not in row:
            raise FcpTuneError(
                f"{source}: field '{where}' must have exactly the keys max_len and degree, "
                f"got {sorted(map(str, row))}"
            )
        last = i == len(rows) - 1
        max_len = row["max_len"]
        if last:
            if max_len is not None:
                raise FcpTuneError(
                    f"{source}: field '{where}.max_len' must be null (the last range is "
                    f"open-ended), got {max_len!r}"
                )
        else:
            boundaries.append(_int_field(f"{where}.max_len", max_len, source))
        degrees.append(_int_field(f"{where}.degree", row["degree"], source))
    return boundaries, degrees


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file (``schema: fcp-tune/policy``)."""
    data = read_document(path, POLICY_SCHEMA, POLICY_SCHEMA_VERSIONS)
    return Policy.from_dict(data, source=str(path))


def save_policy(policy: Policy, path: str | os.PathLike[str]) -> Path:
    """Atomically write ``policy`` as YAML to ``path``; returns the path."""
    return write_yaml(path, policy.to_dict())
