"""The profile file: frozen dataclasses, their YAML form, load/save with one-line errors.

A profile (``schema: fcp-tune/profile``, ``schema_version: 1``) records what one machine
(or a set of public figures, for a *reference* profile) does with the work fcp-tune plans:
attention block times over a grid of lengths, collective times per group size with an
alpha-beta fit, token-linear seconds per token, memory per token and per parameter, and
an optional rule to extrapolate collectives past one node. The layout is documented in
``docs/PROFILES.md``. Derived numbers (TFLOP/s per attention point, algbw/busbw per sample)
are written for people and ignored on load. Every bad value raises
:class:`~fcp_tune.errors.FcpTuneError` naming the file and the field.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from fcp_tune.errors import FcpTuneError
from fcp_tune.fileio import check_document, plain, read_document, write_yaml
from fcp_tune.modelcfg import ModelConfig
from fcp_tune.profile.collectives import OPS, nccl_row
from fcp_tune.profile.flops import FLOP_CONVENTION, attention_bwd_flops, attention_fwd_flops

SCHEMA = "fcp-tune/profile"
SCHEMA_VERSION = 1
COLLECTIVE_CONVENTION = (
    "nccl-tests: algbw = bytes / time; busbw = algbw * (n-1)/n (all_gather: bytes = total gathered; "
    "reduce_scatter, all_to_all: bytes = per-rank send buffer), algbw * 2(n-1)/n (all_reduce), algbw "
    "(p2p_ring: bytes each rank sends per ring step); bandwidths in GB/s (1e9 B/s); fit t = alpha_s + bytes / beta_Bps"
)


def _positive(value: Any, where: str, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (or >= 0), else an error naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FcpTuneError(f"{where} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise FcpTuneError(f"{where} must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return float(value)


def _finite(value: Any, where: str) -> float:
    """``value`` as a finite float of either sign, else an error naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FcpTuneError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def _count(value: Any, where: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FcpTuneError(f"{where} must be an integer >= {minimum}, got {value!r}")
    return value


def _get(data: Any, key: str, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise FcpTuneError(f"{where} must be a mapping, got {type(data).__name__}")
    if key not in data:
        raise FcpTuneError(f"{where}.{key}: missing field")
    return data[key]


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise FcpTuneError(f"{where} must be a list, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class AttentionPoint:
    """Seconds of one attention block (all heads, one layer): ``q_len`` rows x ``k_len`` keys."""

    q_len: int
    k_len: int
    causal: bool
    fwd_s: float
    bwd_s: float

    def __post_init__(self) -> None:
        _count(self.q_len, "attention.q_len")
        _count(self.k_len, "attention.k_len")
        _positive(self.fwd_s, "attention.fwd_s")
        _positive(self.bwd_s, "attention.bwd_s")
        if self.causal and self.q_len != self.k_len:
            raise FcpTuneError(f"attention: causal points must be squares, got q_len {self.q_len} k_len {self.k_len}")


@dataclass(frozen=True)
class CommFit:
    """``t = alpha_s + bytes / beta_Bps``."""

    alpha_s: float
    beta_Bps: float

    def __post_init__(self) -> None:
        _positive(self.alpha_s, "fit.alpha_s", allow_zero=True)
        _positive(self.beta_Bps, "fit.beta_Bps")

    def time(self, nbytes: float) -> float:
        return self.alpha_s + float(nbytes) / self.beta_Bps


@dataclass(frozen=True)
class CommSample:
    """One message size: median and max over ranks of each rank's median time."""

    bytes: int
    median_s: float
    max_s: float


@dataclass(frozen=True)
class CommCurve:
    """One collective at one group size: its samples and their fit."""

    op: str
    group_size: int
    fit: CommFit
    samples: tuple[CommSample, ...] = ()


@dataclass(frozen=True)
class LinearCost:
    """Token-linear work of the whole model per token, forward + backward.

    Projections, MLP, norms, RoPE, residuals, embedding, LM head and loss: everything but
    the attention core. ``flops_per_token`` counts the matmuls only
    (``ModelConfig.linear_flops_per_token``); ``flops_per_s = flops_per_token /
    seconds_per_token`` is the effective rate the cost model applies to any model's
    matmul FLOPs, so the non-matmul work rides along in proportion.
    """

    seconds_per_token: float
    flops_per_token: float
    method: str = ""
    # Optional (0 in profiles measured before they existed; written only when non-zero).
    # wave_s: fixed seconds of one forward+backward call, whatever its token count (Python
    # dispatch and launches); the executor pays it once per group a rank joins, and
    # seconds_per_token is then the marginal per-token cost. core_s_per_token: seconds per
    # token per layer the attention core spends outside the kernels the attention grid
    # times (packing K/V, merging outputs, gradient buffers) on a one-rank group;
    # core_slope_s_per_token: what each further rank of the group adds to that (the K/V
    # buffers hold the group's tokens), fitted from a world-sized group. Measured by
    # fcp_tune.profile.layer, priced by fcp_tune.costmodel.
    wave_s: float = 0.0
    core_s_per_token: float = 0.0
    core_slope_s_per_token: float = 0.0

    @property
    def flops_per_s(self) -> float:
        return self.flops_per_token / self.seconds_per_token


@dataclass(frozen=True)
class MemoryCost:
    """Activation bytes kept for backward per token per layer, and state bytes per parameter."""

    activation_bytes_per_token_per_layer: float
    bytes_per_param: float
    optimizer_s_per_param: float
    method: str = ""


@dataclass(frozen=True)
class Extrapolation:
    """How collectives behave past one node: ``gpus_per_node`` and one inter-node link fit.

    ``inter_node`` is one rank's network link (per direction). Groups are assumed to be
    node-aligned (a group of ``<= gpus_per_node`` ranks stays inside one node).
    """

    gpus_per_node: int
    inter_node: CommFit
    note: str = ""


@dataclass(frozen=True)
class Profile:
    """Everything the cost model needs about one machine (or one set of public figures)."""

    label: str
    created: str
    command: str
    hardware: Mapping[str, Any]
    world_size: int
    backend: str
    model: ModelConfig
    attention: tuple[AttentionPoint, ...]
    collectives: tuple[CommCurve, ...]
    linear: LinearCost
    memory: MemoryCost
    extrapolation: Extrapolation | None = None
    sources: tuple[str, ...] = ()
    notes: str = ""
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        _count(self.world_size, "world_size")
        if not any(p.causal for p in self.attention) or not any(not p.causal for p in self.attention):
            raise FcpTuneError("attention: needs at least one full and one causal point")
        _check_grid(self.attention)
        for c in self.collectives:
            if c.op not in OPS:
                raise FcpTuneError(f"collectives: unknown op {c.op!r}; expected one of {', '.join(OPS)}")
            if not 2 <= c.group_size <= self.world_size:
                raise FcpTuneError(
                    f"collectives.{c.op}: group_size {c.group_size} outside [2, world_size {self.world_size}]"
                )
            key = (c.op, c.group_size)
            if key in self._index:
                raise FcpTuneError(f"collectives.{c.op}: group_size {c.group_size} listed twice")
            self._index[key] = c

    def curve(self, op: str, group_size: int) -> CommCurve | None:
        """The measured curve of ``op`` at ``group_size``, or None."""
        return self._index.get((op, group_size))

    def nccl_rows(self) -> list[dict[str, Any]]:
        """Every measured collective sample as an nccl-tests result line (see ``collectives.nccl_row``).

        Ordered by collective (profile order), group size and message size; reference
        profiles, which have fits but no samples, give no rows.
        """
        order = {op: i for i, op in enumerate(OPS)}
        curves = sorted(self.collectives, key=lambda c: (order[c.op], c.group_size))
        return [nccl_row(c.op, c.group_size, s.bytes, s.median_s, s.max_s)
                for c in curves for s in sorted(c.samples, key=lambda s: s.bytes)]

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form with the derived columns, ready for YAML or JSON."""
        m = self.model
        points = []
        for p in self.attention:
            f = attention_fwd_flops(p.q_len, p.k_len, p.causal, m.heads, m.head_dim)
            b = attention_bwd_flops(p.q_len, p.k_len, p.causal, m.heads, m.head_dim)
            points.append({
                "q_len": p.q_len, "k_len": p.k_len, "causal": p.causal, "fwd_s": p.fwd_s, "bwd_s": p.bwd_s,
                "fwd_tflops": round(f / p.fwd_s / 1e12, 4), "bwd_tflops": round(b / p.bwd_s / 1e12, 4),
            })
        coll: dict[str, list] = {}
        for c in self.collectives:
            samples = []
            for s in c.samples:
                row = nccl_row(c.op, c.group_size, s.bytes, s.median_s)
                samples.append({"bytes": s.bytes, "count": row["count"], "median_s": s.median_s, "max_s": s.max_s,
                                "algbw": round(row["algbw_GBps"], 4), "busbw": round(row["busbw_GBps"], 4)})
            coll.setdefault(c.op, []).append({
                "group_size": c.group_size, "fit": {"alpha_s": c.fit.alpha_s, "beta_Bps": c.fit.beta_Bps},
                "samples": samples,
            })
        ex = None
        if self.extrapolation is not None:
            e = self.extrapolation
            ex = {"gpus_per_node": e.gpus_per_node,
                  "inter_node": {"alpha_s": e.inter_node.alpha_s, "beta_Bps": e.inter_node.beta_Bps}, "note": e.note}
        return {
            "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "label": self.label, "created": self.created,
            "command": self.command, "world_size": self.world_size, "backend": self.backend,
            "hardware": plain(self.hardware), "model": {**m.to_dict(), "head_dim": m.head_dim},
            "conventions": {"attention_flops": FLOP_CONVENTION, "collectives": COLLECTIVE_CONVENTION},
            "attention": points, "collectives": coll,
            "linear": {"seconds_per_token": self.linear.seconds_per_token,
                       "flops_per_token": self.linear.flops_per_token,
                       "tflops": round(self.linear.flops_per_s / 1e12, 4), "method": self.linear.method,
                       **({"wave_s": self.linear.wave_s} if self.linear.wave_s else {}),
                       **({"core_s_per_token": self.linear.core_s_per_token} if self.linear.core_s_per_token else {}),
                       **({"core_slope_s_per_token": self.linear.core_slope_s_per_token}
                          if self.linear.core_slope_s_per_token else {})},
            "memory": {"activation_bytes_per_token_per_layer": self.memory.activation_bytes_per_token_per_layer,
                       "bytes_per_param": self.memory.bytes_per_param,
                       "optimizer_s_per_param": self.memory.optimizer_s_per_param, "method": self.memory.method},
            "extrapolation": ex, "sources": list(self.sources), "notes": self.notes,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<profile>") -> "Profile":
        """Parse and validate a document (schema already checked or checked here)."""
        check_document(data, SCHEMA, (SCHEMA_VERSION,), source=source)
        try:
            return _parse(data)
        except FcpTuneError as exc:
            raise FcpTuneError(f"{source}: {exc}") from None


def _check_grid(points: tuple[AttentionPoint, ...]) -> None:
    """Full points must form a complete q_len x k_len grid, each point once."""
    seen: set[tuple[int, int, bool]] = set()
    for p in points:
        key = (p.q_len, p.k_len, p.causal)
        if key in seen:
            raise FcpTuneError(f"attention: point q_len {p.q_len} k_len {p.k_len} causal {p.causal} listed twice")
        seen.add(key)
    full = {(q, k) for q, k, c in seen if not c}
    qs, ks = sorted({q for q, _ in full}), sorted({k for _, k in full})
    for q in qs:
        for k in ks:
            if (q, k) not in full:
                raise FcpTuneError(f"attention: full grid is missing the point q_len {q} k_len {k}")


def _fit(data: Any, where: str) -> CommFit:
    return CommFit(_positive(_get(data, "alpha_s", where), f"{where}.alpha_s", allow_zero=True),
                   _positive(_get(data, "beta_Bps", where), f"{where}.beta_Bps"))


def _parse(d: Mapping[str, Any]) -> Profile:
    model_d = _get(d, "model", "profile")
    if not isinstance(model_d, Mapping):
        raise FcpTuneError("model must be a mapping")
    model_fields = {k: v for k, v in model_d.items() if k != "head_dim"}
    model = ModelConfig.from_dict(model_fields, source="model")
    if "head_dim" in model_d and model_d["head_dim"] != model.head_dim:
        raise FcpTuneError(f"model.head_dim {model_d['head_dim']!r} disagrees with hidden / heads = {model.head_dim}")
    points = []
    for i, p in enumerate(_list(_get(d, "attention", "profile"), "attention")):
        w = f"attention[{i}]"
        causal = _get(p, "causal", w)
        if not isinstance(causal, bool):
            raise FcpTuneError(f"{w}.causal must be true or false, got {causal!r}")
        points.append(AttentionPoint(
            _count(_get(p, "q_len", w), f"{w}.q_len"), _count(_get(p, "k_len", w), f"{w}.k_len"), causal,
            _positive(_get(p, "fwd_s", w), f"{w}.fwd_s"), _positive(_get(p, "bwd_s", w), f"{w}.bwd_s"),
        ))
    curves = []
    coll = _get(d, "collectives", "profile")
    if not isinstance(coll, Mapping):
        raise FcpTuneError("collectives must be a mapping of collective name to curves")
    for op, rows in coll.items():
        if op not in OPS:
            raise FcpTuneError(f"collectives: unknown op {op!r}; expected one of {', '.join(OPS)}")
        for i, row in enumerate(_list(rows, f"collectives.{op}")):
            w = f"collectives.{op}[{i}]"
            size = _count(_get(row, "group_size", w), f"{w}.group_size", 2)
            samples = []
            for j, s in enumerate(_list(row.get("samples") or [], f"{w}.samples")):
                ws = f"{w}.samples[{j}]"
                samples.append(CommSample(_count(_get(s, "bytes", ws), f"{ws}.bytes", 0),
                                          _positive(_get(s, "median_s", ws), f"{ws}.median_s"),
                                          _positive(_get(s, "max_s", ws), f"{ws}.max_s")))
            curves.append(CommCurve(op, size, _fit(_get(row, "fit", w), f"{w}.fit"), tuple(samples)))
    lin = _get(d, "linear", "profile")
    linear = LinearCost(
        _positive(_get(lin, "seconds_per_token", "linear"), "linear.seconds_per_token"),
        _positive(_get(lin, "flops_per_token", "linear"), "linear.flops_per_token"),
        str(lin.get("method", "")),
        _positive(lin.get("wave_s", 0.0), "linear.wave_s", allow_zero=True),
        _positive(lin.get("core_s_per_token", 0.0), "linear.core_s_per_token", allow_zero=True),
        _finite(lin.get("core_slope_s_per_token", 0.0), "linear.core_slope_s_per_token"),
    )
    mem = _get(d, "memory", "profile")
    memory = MemoryCost(
        _positive(_get(mem, "activation_bytes_per_token_per_layer", "memory"), "memory.activation_bytes_per_token_per_layer"),
        _positive(_get(mem, "bytes_per_param", "memory"), "memory.bytes_per_param"),
        _positive(_get(mem, "optimizer_s_per_param", "memory"), "memory.optimizer_s_per_param", allow_zero=True),
        str(mem.get("method", "")),
    )
    ex_d = d.get("extrapolation")
    ex = None
    if ex_d is not None:
        ex = Extrapolation(_count(_get(ex_d, "gpus_per_node", "extrapolation"), "extrapolation.gpus_per_node"),
                           _fit(_get(ex_d, "inter_node", "extrapolation"), "extrapolation.inter_node"),
                           str(ex_d.get("note", "")))
    created = _get(d, "created", "profile")
    hardware = _get(d, "hardware", "profile")
    if not isinstance(hardware, Mapping):
        raise FcpTuneError("hardware must be a mapping")
    sources = d.get("sources") or []
    return Profile(
        label=str(_get(d, "label", "profile")), created=created.isoformat() if isinstance(created, (_dt.date, _dt.datetime)) else str(created),
        command=str(_get(d, "command", "profile")), hardware=dict(hardware),
        world_size=_count(_get(d, "world_size", "profile"), "world_size"), backend=str(d.get("backend", "")),
        model=model, attention=tuple(points), collectives=tuple(curves), linear=linear, memory=memory,
        extrapolation=ex, sources=tuple(str(s) for s in _list(sources, "sources")), notes=str(d.get("notes", "") or ""),
    )


def load_profile(path: str | os.PathLike[str]) -> Profile:
    """Read and validate a profile YAML file (or a bundled profile named like ``h100-8x-reference``)."""
    from fcp_tune.profile.bundled import resolve_profile_path

    return read_profile_file(resolve_profile_path(path))


def read_profile_file(path: str | os.PathLike[str]) -> Profile:
    """Read and validate the profile YAML file at ``path`` (a path, not a name)."""
    data = read_document(path, SCHEMA, (SCHEMA_VERSION,))
    return Profile.from_dict(data, source=str(path))


def save_profile(profile: Profile, path: str | os.PathLike[str]) -> Path:
    """Write ``profile`` as YAML atomically (readers never see a half-written file)."""
    return write_yaml(path, profile.to_dict())
