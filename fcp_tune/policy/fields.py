"""Kind-specific policy fields: each one parses, checks and writes its own part of a policy.

A field owns one key of the policy document and the :class:`~fcp_tune.policy.Policy`
attributes it fills. A kind lists the fields it takes (:attr:`Kind.fields
<fcp_tune.policy.kinds.Kind.fields>`); :class:`Policy` asks each field to parse, check and
serialise itself, so a kind with a new field touches only its field and its entry.
``spec_arg`` names the value a kind takes on the command line (``KIND:D``); a field
without one (``thresholds``: a whole table) cannot be built from a name, only loaded from a file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

from fcp_tune.errors import FcpTuneError
from fcp_tune.policy.degrees import smallest_dividing_degree

if TYPE_CHECKING:
    from fcp_tune.policy.core import Policy
    from fcp_tune.policy.kinds import Kind


def is_int(value: Any) -> bool:
    """A Python or numpy integer (``bool`` excluded)."""
    return isinstance(value, int) and not isinstance(value, bool) or (
        type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "iu"
    )


def int_field(name: str, value: Any, source: str, minimum: int | None = None) -> int:
    """``value`` as a plain int; an error naming ``source`` and field ``name`` otherwise."""
    if not is_int(value):
        raise FcpTuneError(f"{source}: field '{name}' must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise FcpTuneError(f"{source}: field '{name}' must be >= {minimum}, got {value}")
    return value


class Field:
    """The interface (and the no-op defaults) of a kind-specific field."""

    key: str = ""  # its key in the policy document
    spec_arg: str | None = None  # its command-line value (``KIND:D``), if it can be given there

    def parse(self, doc: Mapping[str, Any], source: str, kind: Any, mine: bool) -> dict[str, Any]:
        """The Policy attributes from the document ``doc`` (``mine``: the kind takes this field)."""
        raise NotImplementedError

    def check(self, policy: "Policy", source: str, rule: "Kind") -> dict[str, Any]:
        """The normalised attributes of a policy whose kind takes this field; raises naming the field."""
        raise NotImplementedError

    def check_absent(self, policy: "Policy", source: str, takers: str) -> dict[str, Any]:
        """The normalised attributes of a policy whose kind does not take this field (must be unset)."""
        raise NotImplementedError

    def dump(self, policy: "Policy") -> dict[str, Any]:
        """The document entries of this field."""
        raise NotImplementedError

    def from_spec(self, arg: str, rule: "Kind", world_size: int, token_budget: int, longest: int) -> dict[str, Any]:
        """The attributes for ``KIND[:arg]`` on the command line (``arg`` may be empty: the default)."""
        raise FcpTuneError(f"policy {rule.name!r} cannot be built from a name; give a policy file")


class DegreeField(Field):
    """``degree``: one CP degree (``megatron``, ``static``); on the command line ``KIND:D``.

    Without ``D`` the degree is the smallest dividing N that holds the longest sequence
    (after the kind's padding), the degree Megatron-LM users run (DP = N / CP).
    """

    key = "degree"
    spec_arg = "D"

    def parse(self, doc: Mapping[str, Any], source: str, kind: Any, mine: bool) -> dict[str, Any]:
        return {"degree": doc.get("degree")}

    def check(self, policy: "Policy", source: str, rule: "Kind") -> dict[str, Any]:
        n = policy.world_size
        if policy.degree is None:
            raise FcpTuneError(f"{source}: field 'degree' is required for kind {policy.kind}")
        d = int_field("degree", policy.degree, source)
        if not 1 <= d <= n:
            raise FcpTuneError(f"{source}: field 'degree' must be in 1..{n} (world_size), got {d}")
        if rule.degree_divides_world and n % d:
            raise FcpTuneError(
                f"{source}: field 'degree' must divide world_size {n} for kind {policy.kind} "
                f"(DP = N / CP), got {d}"
            )
        return {"degree": d}

    def check_absent(self, policy: "Policy", source: str, takers: str) -> dict[str, Any]:
        if policy.degree is not None:
            raise FcpTuneError(f"{source}: field 'degree' is only for {takers}, not {policy.kind}")
        return {}

    def dump(self, policy: "Policy") -> dict[str, Any]:
        return {"degree": policy.degree}

    def from_spec(self, arg: str, rule: "Kind", world_size: int, token_budget: int, longest: int) -> dict[str, Any]:
        if arg:
            try:
                return {"degree": int(arg)}
            except ValueError:
                raise FcpTuneError(f"{rule.name} degree must be an integer, got {arg!r}") from None
        degree = smallest_dividing_degree(world_size, token_budget, longest, padded=rule.thd_padding)
        return {"degree": degree}


class ThresholdsField(Field):
    """``thresholds``: a length table ``[{max_len, degree}, ..., {max_len: null, degree}]``.

    Held as ``boundaries`` / ``degrees``: ``L <= boundaries[0]`` gets ``degrees[0]``, ...,
    ``L > boundaries[-1]`` gets ``degrees[-1]``.
    """

    key = "thresholds"

    def parse(self, doc: Mapping[str, Any], source: str, kind: Any, mine: bool) -> dict[str, Any]:
        boundaries: list[Any] = []
        degrees: list[Any] = []
        if "thresholds" in doc:
            if not mine:
                raise FcpTuneError(f"{source}: field 'thresholds' is only for kind thresholds, not {kind!r}")
            boundaries, degrees = _parse_table(doc["thresholds"], source)
        elif mine:
            raise FcpTuneError(f"{source}: field 'thresholds' is required for kind {kind}")
        return {"boundaries": tuple(boundaries), "degrees": tuple(degrees)}

    @staticmethod
    def _ints(policy: "Policy", source: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if not isinstance(policy.boundaries, (tuple, list)) or not isinstance(policy.degrees, (tuple, list)):
            raise FcpTuneError(f"{source}: fields 'boundaries' and 'degrees' must be sequences of integers")
        bounds = tuple(int_field("boundaries", b, source) for b in policy.boundaries)
        degs = tuple(int_field("degrees", d, source) for d in policy.degrees)
        return bounds, degs

    def check(self, policy: "Policy", source: str, rule: "Kind") -> dict[str, Any]:
        bounds, degs = self._ints(policy, source)
        n = policy.world_size
        if any(b < 1 for b in bounds):
            raise FcpTuneError(f"{source}: field 'boundaries' must be positive, got {list(bounds)}")
        if any(b2 <= b1 for b1, b2 in zip(bounds, bounds[1:])):
            raise FcpTuneError(f"{source}: field 'boundaries' must be strictly increasing, got {list(bounds)}")
        if len(degs) != len(bounds) + 1:
            raise FcpTuneError(
                f"{source}: field 'degrees' needs len(boundaries)+1 = {len(bounds) + 1} entries, got {len(degs)}"
            )
        for d in degs:
            if not 1 <= d <= n:
                raise FcpTuneError(f"{source}: field 'degrees' entries must be in 1..{n} (world_size), got {d}")
        return {"boundaries": bounds, "degrees": degs}

    def check_absent(self, policy: "Policy", source: str, takers: str) -> dict[str, Any]:
        bounds, degs = self._ints(policy, source)
        if bounds or degs:
            raise FcpTuneError(
                f"{source}: fields 'boundaries'/'degrees' (thresholds) are only for {takers}, not {policy.kind}"
            )
        return {"boundaries": (), "degrees": ()}

    def dump(self, policy: "Policy") -> dict[str, Any]:
        maxes: list[int | None] = list(policy.boundaries) + [None]
        return {"thresholds": [{"max_len": m, "degree": d} for m, d in zip(maxes, policy.degrees)]}


def _parse_table(rows: Any, source: str) -> tuple[list[int], list[int]]:
    """``[{max_len, degree}, ..., {max_len: null, degree}]`` -> (boundaries, degrees)."""
    if not isinstance(rows, list) or not rows:
        raise FcpTuneError(f"{source}: field 'thresholds' must be a non-empty list of {{max_len, degree}}")
    boundaries: list[int] = []
    degrees: list[int] = []
    for i, row in enumerate(rows):
        where = f"thresholds[{i}]"
        if not isinstance(row, Mapping):
            raise FcpTuneError(f"{source}: field '{where}' must be a mapping {{max_len, degree}}, got {row!r}")
        extra = [str(k) for k in row if k not in ("max_len", "degree")]
        if extra or "degree" not in row or "max_len" not in row:
            raise FcpTuneError(
                f"{source}: field '{where}' must have exactly the keys max_len and degree, "
                f"got {sorted(map(str, row))}"
            )
        max_len = row["max_len"]
        if i == len(rows) - 1:
            if max_len is not None:
                raise FcpTuneError(
                    f"{source}: field '{where}.max_len' must be null (the last range is open-ended), got {max_len!r}"
                )
        else:
            boundaries.append(int_field(f"{where}.max_len", max_len, source))
        degrees.append(int_field(f"{where}.degree", row["degree"], source))
    return boundaries, degrees


DEGREE = DegreeField()
THRESHOLDS = ThresholdsField()
# Every kind-specific field, in document order.
FIELDS: tuple[Field, ...] = (DEGREE, THRESHOLDS)
