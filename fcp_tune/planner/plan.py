"""The plan data types (:class:`Group`, :class:`Wave`, :class:`Plan`) and their one checker.

A plan says, for one global batch, which contiguous rank range processes which sequences,
wave by wave: in each wave the ranks are split into disjoint contiguous groups (ranks may
idle) and every group runs forward and backward on its sequences, each sequence sharded
over the whole group (zigzag, :mod:`fcp_tune.schemes.layout`). Plans are plain frozen data so the
executor, the simulator and the tests can share and compare them; :meth:`Plan.validate`
is the single place the rules are written down.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from fcp_tune.schemes.layout import max_tokens_per_rank

if TYPE_CHECKING:
    from fcp_tune.policy import Policy


@dataclass(frozen=True)
class Group:
    """Ranks ``[start, start + size)`` process sequences ``seq_ids`` (batch indices, ascending)."""

    start: int
    size: int
    seq_ids: tuple[int, ...]

    def __post_init__(self) -> None:
        if type(self.seq_ids) is not tuple:
            object.__setattr__(self, "seq_ids", tuple(int(s) for s in self.seq_ids))

    @property
    def stop(self) -> int:
        """One past the group's last rank."""
        return self.start + self.size

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "size": self.size, "seq_ids": list(self.seq_ids)}


@dataclass(frozen=True)
class Wave:
    """Disjoint groups that run at the same time (sorted by ``start`` when built by the planner)."""

    groups: tuple[Group, ...]

    def __post_init__(self) -> None:
        if type(self.groups) is not tuple:
            object.__setattr__(self, "groups", tuple(self.groups))


@dataclass(frozen=True)
class Plan:
    """Which ranks process which sequences, wave after wave, for one batch of ``world_size`` ranks."""

    world_size: int
    waves: tuple[Wave, ...]
    kind: str

    def __post_init__(self) -> None:
        if type(self.waves) is not tuple:
            object.__setattr__(self, "waves", tuple(self.waves))

    # ------------------------------------------------------------------ queries
    def group_of(self, wave: int, rank: int) -> Group | None:
        """The group ``rank`` belongs to in wave ``wave``, or ``None`` when it idles."""
        for g in self.waves[wave].groups:
            if g.start <= rank < g.start + g.size:
                return g
        return None

    def ranges(self) -> tuple[tuple[int, int], ...]:
        """Distinct ``(start, size)`` ranges this plan uses, sorted."""
        return tuple(sorted({(g.start, g.size) for w in self.waves for g in w.groups}))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON/YAML safe)."""
        return {
            "world_size": self.world_size,
            "kind": self.kind,
            "waves": [[g.to_dict() for g in w.groups] for w in self.waves],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Plan":
        """Inverse of :meth:`to_dict` (no validation: call :meth:`validate`)."""
        waves = tuple(
            Wave(tuple(Group(int(g["start"]), int(g["size"]), tuple(g["seq_ids"])) for g in w))
            for w in d["waves"]
        )
        return cls(int(d["world_size"]), waves, str(d["kind"]))

    def digest(self) -> int:
        """A deterministic 62-bit fingerprint of the plan's content (sha256 of its JSON form).

        Ranks compare it (e.g. with an all-reduce of min and max) to prove they all run the
        same plan; it fits a signed 64-bit tensor element.
        """
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & ((1 << 62) - 1)

    # ------------------------------------------------------------------ rules
    def validate(self, seqlens: Sequence[int], policy: "Policy") -> None:
        """Raise ``ValueError`` naming the first broken rule, or return ``None``.

        Rules: ``world_size`` equals the policy's; at least one wave, none empty, no empty
        group; groups inside ``[0, world_size)`` and disjoint within a wave; every sequence
        in exactly one group of one wave; each group at least ``policy.degree_for(L)`` ranks
        for each of its sequences (exactly that for kinds marked ``exact``: static, megatron); no rank above
        ``policy.token_budget`` tokens (exact zigzag chunking).
        """
        n = self.world_size
        if not seqlens:
            raise ValueError("plan check: seqlens is empty")
        if n != policy.world_size:
            raise ValueError(f"plan world_size {n} differs from the policy's world_size {policy.world_size}")
        if not self.waves:
            raise ValueError("plan has no waves")
        seen: dict[int, int] = {}
        for w, wave in enumerate(self.waves):
            if not wave.groups:
                raise ValueError(f"wave {w} has no groups")
            used: list[tuple[int, int]] = []
            for g in wave.groups:
                where = f"wave {w} group at ranks [{g.start}, {g.start + g.size})"
                if g.size < 1:
                    raise ValueError(f"{where}: size must be >= 1, got {g.size}")
                if g.start < 0 or g.start + g.size > n:
                    raise ValueError(f"{where}: outside ranks [0, {n})")
                if not g.seq_ids:
                    raise ValueError(f"{where}: has no sequences")
                used.append((g.start, g.start + g.size))
                for s in g.seq_ids:
                    if not 0 <= s < len(seqlens):
                        raise ValueError(f"{where}: sequence id {s} out of range [0, {len(seqlens)})")
                    if s in seen:
                        raise ValueError(f"{where}: sequence {s} already placed in wave {seen[s]}")
                    seen[s] = w
                    need = policy.degree_for(int(seqlens[s]))
                    exact = policy.rule.exact
                    if g.size < need or (exact and g.size != need):
                        rel = "exactly" if exact else "at least"
                        raise ValueError(
                            f"{where}: sequence {s} (length {seqlens[s]}) needs {rel} {need} ranks "
                            f"under the {policy.kind} policy, group has {g.size}"
                        )
                held = max_tokens_per_rank([int(seqlens[s]) for s in g.seq_ids], g.size)
                if held > policy.token_budget:
                    raise ValueError(
                        f"{where}: a rank holds {held} tokens, above token_budget {policy.token_budget}"
                    )
            used.sort()
            for (a0, a1), (b0, b1) in zip(used, used[1:]):
                if b0 < a1:
                    raise ValueError(f"wave {w}: groups [{a0}, {a1}) and [{b0}, {b1}) overlap")
        missing = [s for s in range(len(seqlens)) if s not in seen]
        if missing:
            head = ", ".join(map(str, missing[:8])) + (" ..." if len(missing) > 8 else "")
            raise ValueError(f"sequence(s) {head} not placed in any group")
