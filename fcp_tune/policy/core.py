"""Context-parallel degree policies: which group size each sequence gets, and their YAML form.

A :class:`Policy` answers one question per sequence, "how many ranks must (or should)
process it?", and carries the two limits every plan honours: the world size ``N`` and the
per-rank ``token_budget`` (the most tokens one rank may hold in one wave, a memory limit).
Five kinds, from the baselines to the method fcp-tune implements (each is one entry of
:data:`fcp_tune.policy.kinds.KINDS`: its degree rule, its fields, its baselines; its planner
is the same-named entry of :data:`fcp_tune.planner.api.PLANNERS`):

- ``megatron``: Megatron-LM static CP as its users run it: one CP ``degree`` dividing N
  (DP = N / CP), sequences padded to a multiple of ``2 * degree`` and packed first fit, in
  arrival order, into micro-batches of ``degree * token_budget`` tokens;
- ``static``: one CP ``degree`` for every sequence, planned by fcp-tune's cost-balanced
  static planner (a stronger baseline than Megatron-LM's token packing);
- ``pow2``: ``ceil_pow2(min_degree(L))`` (Megatron-Core dynamic CP: powers of two only);
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
from typing import Any, Iterable, Mapping

import numpy as np

from fcp_tune.errors import FcpTuneError
from fcp_tune.fileio import check_document, plain, read_document, write_yaml
from fcp_tune.policy.degrees import fitting_degree, min_degree_for, min_degrees
from fcp_tune.policy.fields import FIELDS, int_field
from fcp_tune.policy.kinds import KINDS, POLICY_KINDS, Kind, takers
from fcp_tune.schemes import DEFAULT_SCHEME, SCHEMES

POLICY_SCHEMA = "fcp-tune/policy"
POLICY_SCHEMA_VERSIONS = (1,)
# Adaptive plans' group vocabulary (fcp_tune.planner.vocab and docs/POLICIES.md): at most 24
# communicators per rank (<= 16.5 GB even if all were created, at NCCL's ~688 MB each on
# A100; created lazily, plans use far fewer), nodes of 8 GPUs.
DEFAULT_MAX_COMMUNICATORS = 24
DEFAULT_GPUS_PER_NODE = 8

_TOP_KEYS = (
    ("schema", "schema_version", "kind", "world_size", "token_budget", "scheme")
    + tuple(f.key for f in FIELDS)
    + ("max_communicators", "gpus_per_node", "metadata")
)


@dataclass(frozen=True)
class Policy:
    """How many ranks each sequence gets; see the module docstring for the kinds.

    Kind-specific fields (:mod:`fcp_tune.policy.fields`): ``degree`` for the kinds that take
    one (``megatron``, ``static``); ``boundaries`` / ``degrees`` for ``thresholds``
    (``L <= boundaries[0]`` gets ``degrees[0]``, ..., ``L > boundaries[-1]`` gets
    ``degrees[-1]``). A field the kind does not take must stay unset. ``metadata`` is
    free-form provenance, kept out of equality.
    """

    kind: str
    world_size: int
    token_budget: int
    scheme: str = DEFAULT_SCHEME
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
        put(self, "world_size", int_field("world_size", self.world_size, source, 1))
        put(self, "token_budget", int_field("token_budget", self.token_budget, source, 1))
        put(self, "max_communicators", int_field("max_communicators", self.max_communicators, source, 0))
        put(self, "gpus_per_node", int_field("gpus_per_node", self.gpus_per_node, source, 1))
        if not isinstance(self.scheme, str) or self.scheme not in SCHEMES:
            raise FcpTuneError(
                f"{source}: field 'scheme' must be one of {', '.join(SCHEMES)}, got {self.scheme!r}"
            )
        rule = self.rule
        for f in FIELDS:
            values = f.check(self, source, rule) if f in rule.fields else f.check_absent(self, source, takers(f))
            for key, value in values.items():
                put(self, key, value)
        if not isinstance(self.metadata, Mapping):
            got = type(self.metadata).__name__
            raise FcpTuneError(f"{source}: field 'metadata' must be a mapping, got {got}")
        put(self, "metadata", dict(self.metadata))  # a private copy (a plain dict pickles)

    @property
    def rule(self) -> Kind:
        """This policy's kind entry (:data:`fcp_tune.policy.kinds.KINDS`)."""
        return KINDS[self.kind]

    # ------------------------------------------------------------------ degrees
    def min_degree(self, seqlen: int) -> int:
        """The memory minimum: fewest ranks holding <= ``token_budget`` tokens each (>= 1).

        ``ceil(seqlen / token_budget)``, one more for a few lengths when the budget is odd
        (see :func:`~fcp_tune.policy.degrees.min_degree_for`).
        """
        return min_degree_for(int(seqlen), self.token_budget)

    def degree_for(self, seqlen: int) -> int:
        """The group size this policy gives a sequence of ``seqlen`` tokens (:meth:`degrees_for` of one)."""
        return int(self.degrees_for(np.array([int(seqlen)], dtype=np.int64))[0])

    def degrees_for(self, lengths: Iterable[int] | np.ndarray) -> np.ndarray:
        """The group size this policy gives each sequence, as an int64 array.

        static/megatron: ``degree``; pow2: ``ceil_pow2(min_degree)``; thresholds: the table
        lookup; adaptive: ``min_degree`` (the planner may give more). A degree below the
        memory minimum is raised to ``min_degree`` (such a sequence would not fit otherwise;
        ``megatron`` raises instead, as Megatron-LM does). With a tiny odd budget (below the
        degree) a degree above the minimum can put ``budget + 1`` tokens on a rank; it is
        then raised to the next degree (pow2: power of two) that fits. Raises ``ValueError``
        naming the first length whose result exceeds ``world_size``: the sequence does not
        fit ``world_size x token_budget``, or (pow2) its power of two does not fit the world.
        """
        lengths = np.asarray(lengths, dtype=np.int64)
        n, b, rule = self.world_size, self.token_budget, self.rule
        m = min_degrees(lengths, b)
        d = rule.wanted(self, lengths, m)
        if not rule.raise_to_min:
            short = np.nonzero(d < m)[0]
            if short.size:
                k = int(short[0])
                raise FcpTuneError(
                    f"sequence of length {int(lengths[k])} does not fit {self.kind} degree {int(d[k])}: it needs "
                    f"{int(m[k])} ranks at token_budget {b} (set a larger degree)"
                )
        wanted = np.maximum(d, m)
        d = wanted.copy()
        if b % 2:  # odd budget: a raised degree may need more ranks (fitting_degree)
            for k in np.nonzero((d > m) & (lengths > d * (b - 1)) & (d <= n))[0].tolist():
                d[k] = fitting_degree(int(lengths[k]), int(d[k]), b, rule.pow2, n)
        over = np.nonzero(d > n)[0]
        if over.size:
            k = int(over[0])
            if m[k] > n:
                why = f"it needs {int(m[k])} ranks at token_budget {b}"
            elif rule.pow2 and wanted[k] > n:
                why = f"its power-of-two degree {int(wanted[k])} exceeds it"
            else:
                why = (
                    f"its {self.kind} degree {int(wanted[k])} puts more than token_budget {b} "
                    f"tokens on a rank and no larger degree up to {n} fits"
                )
            raise FcpTuneError(f"sequence of length {int(lengths[k])} does not fit world_size {n}: {why}")
        return d

    def possible_degrees(self, max_seqlen: int | None = None) -> tuple[int, ...]:
        """Every value :meth:`degree_for` can return for a length in ``1..max_seqlen``, sorted.

        ``max_seqlen`` defaults to ``world_size * token_budget`` (every length that can fit).
        Used to enumerate the communicators a fixed-degree policy can ever need.
        """
        n, b, rule = self.world_size, self.token_budget, self.rule
        top = n * b if max_seqlen is None else max(1, min(int(max_seqlen), n * b))
        max_m = min_degree_for(top, b)  # min degree is non-decreasing in the length
        out: set[int] = set()
        if b % 2 and b <= n and rule.aligned and top <= 2_000:
            # Tiny odd budget: a raised degree may skip to the next that fits; enumerate.
            for length in range(1, top + 1):
                try:
                    out.add(self.degree_for(length))
                except ValueError:
                    pass
            return tuple(sorted(out))
        out.update(d for d in rule.possible(self, top, max_m) if d <= n)
        if b % 2 and b <= n and out:  # too many lengths to enumerate: a superset will do
            if rule.pow2:
                out.update(1 << k for k in range(n.bit_length()))
            else:
                out.update(range(min(out), n + 1))
        return tuple(sorted(out))

    def padded(self, lengths: Iterable[int] | np.ndarray) -> np.ndarray:
        """The lengths this policy plans and costs for ``lengths`` (after its kind's padding rule)."""
        return self.rule.padded(self, lengths)

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
        for f in self.rule.fields:
            out.update(f.dump(self))
        if (self.max_communicators, self.gpus_per_node) != (DEFAULT_MAX_COMMUNICATORS, DEFAULT_GPUS_PER_NODE):
            out["max_communicators"] = self.max_communicators
            out["gpus_per_node"] = self.gpus_per_node
        out["metadata"] = plain(self.metadata)
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
        rule = KINDS.get(kind) if isinstance(kind, str) else None
        metadata = d.get("metadata")
        values: dict[str, Any] = {
            "kind": kind,
            "world_size": d["world_size"],
            "token_budget": d["token_budget"],
            "scheme": d.get("scheme", DEFAULT_SCHEME),
            "max_communicators": d.get("max_communicators", DEFAULT_MAX_COMMUNICATORS),
            "gpus_per_node": d.get("gpus_per_node", DEFAULT_GPUS_PER_NODE),
            "metadata": {} if metadata is None else metadata,
        }
        for f in FIELDS:
            values.update(f.parse(d, source, kind, rule is not None and f in rule.fields))
        policy = cls.__new__(cls)
        for key, value in values.items():
            object.__setattr__(policy, key, value)
        policy._check(source)
        return policy


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate a policy file (``schema: fcp-tune/policy``)."""
    data = read_document(path, POLICY_SCHEMA, POLICY_SCHEMA_VERSIONS)
    return Policy.from_dict(data, source=str(path))


def save_policy(policy: Policy, path: str | os.PathLike[str]) -> Path:
    """Atomically write ``policy`` as YAML to ``path``; returns the path."""
    return write_yaml(path, policy.to_dict())
