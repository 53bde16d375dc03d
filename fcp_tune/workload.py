"""Workloads: a sample of document lengths (tokens) plus a global batch size in tokens.

Variable-length training is shaped by its length distribution: a few long documents carry
most of the attention FLOPs, which is why context parallelism should be flexible. This
module loads that distribution from files, datasets or seeded built-ins
(:func:`load_workload`), summarises it (:meth:`Workload.stats`) and draws reproducible
global batches from it (:class:`BatchSampler`). Formats and parameters: docs/WORKLOADS.md.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

import numpy as np

from fcp_tune.errors import FcpTuneError
from fcp_tune.limits import MAX_DOCUMENTS, MAX_TOKENS, check_seed, check_tokens
from fcp_tune.fileio import check_document, read_yaml

SCHEMA = "fcp-tune/workload"
SCHEMA_VERSION = 1
LONG_DOCS = ("split", "truncate")
TOKEN_FIELDS = ("num_tokens", "length", "n_tokens")
MIN_DEFAULT_BATCH_TOKENS = 65536
_DOC_KEYS = frozenset(
    {"schema", "schema_version", "name", "description", "global_batch_tokens", "max_len", "seqlens", "histogram"}
)

# Built-in generators: name -> default parameters (ints stay ints). ``lognormal`` alone is a
# realistic pre-training long tail: median 1.5K tokens, p99 ~30K, clipped at 64K.
BUILTINS: Mapping[str, Mapping[str, float]] = MappingProxyType({
    "lognormal": MappingProxyType({"median": 1536, "sigma": 1.3, "n": 10000, "min": 16, "max": 65536}),
    "bimodal": MappingProxyType({"short_mean": 512, "long_mean": 16384, "long_frac": 0.1, "sigma": 0.5,
                                 "n": 10000, "min": 16, "max": 65536}),
    "uniform": MappingProxyType({"lo": 256, "hi": 8192, "n": 10000}),
})
_INT_PARAMS = frozenset({"n", "min", "max", "lo", "hi"})


@dataclass(frozen=True)
class ThresholdShare:
    """Share of tokens and of causal attention FLOPs (∝ L²) in sequences longer than ``length``."""

    length: int
    token_share: float
    flops_share: float


@dataclass(frozen=True)
class HistogramBin:
    """Sequences with ``lo <= L < hi`` (a log2 bin): how many, and their share of all tokens."""

    lo: int
    hi: int
    count: int
    token_share: float


@dataclass(frozen=True)
class WorkloadStats:
    """Summary of a length sample. Percentiles are nearest-rank: always a length in the sample."""

    count: int
    total_tokens: int
    mean: float
    p50: int
    p90: int
    p99: int
    max: int
    min: int
    above: tuple[ThresholdShare, ...]
    histogram: tuple[HistogramBin, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        scalars = ("count", "total_tokens", "mean", "p50", "p90", "p99", "max", "min")
        out: dict[str, Any] = {k: getattr(self, k) for k in scalars}
        out["above"] = [vars(t).copy() for t in self.above]
        out["histogram"] = [vars(b).copy() for b in self.histogram]
        return out


def default_thresholds(max_len: int) -> tuple[int, ...]:
    """The (at most) eight largest powers of two below ``max_len``: 256 .. 32K for a 64K max."""
    ladder = [1 << k for k in range(max(0, max_len - 1).bit_length()) if (1 << k) < max_len]
    return tuple(ladder[-8:])


def compute_stats(seqlens: Sequence[int], thresholds: Sequence[int] | None = None) -> WorkloadStats:
    """Count, percentiles, tail shares above each threshold and a log2 histogram of ``seqlens``."""
    lens = np.sort(np.asarray(seqlens, dtype=np.int64))
    n = len(lens)
    if n == 0:
        raise FcpTuneError("empty workload: no sequence lengths")
    if thresholds is None:
        thresholds = default_thresholds(int(lens[-1]))
    for t in thresholds:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 1:
            raise FcpTuneError(f"threshold {t!r} is not a positive integer length")
    total = int(lens.sum())
    sq = lens.astype(np.float64) ** 2
    sq_total = float(sq.sum())

    def pct(p: int) -> int:  # nearest rank: the ceil(p*n/100)-th smallest
        return int(lens[max(0, -(-p * n // 100) - 1)])

    above = []
    for t in sorted(set(int(t) for t in thresholds)):
        i = int(np.searchsorted(lens, t, side="right"))
        above.append(ThresholdShare(t, float(lens[i:].sum()) / total, float(sq[i:].sum()) / sq_total))
    _, exps = np.frexp(lens.astype(np.float64))  # L = m * 2**e with m in [0.5, 1): floor(log2 L) = e-1
    k = exps.astype(np.int64) - 1
    k0 = int(k[0])
    counts = np.bincount(k - k0)
    tokens = np.bincount(k - k0, weights=lens.astype(np.float64))
    hist = tuple(HistogramBin(1 << (k0 + j), 1 << (k0 + j + 1), int(c), float(tokens[j]) / total)
                 for j, c in enumerate(counts))
    return WorkloadStats(count=n, total_tokens=total, mean=total / n, p50=pct(50), p90=pct(90), p99=pct(99),
                         max=int(lens[-1]), min=int(lens[0]), above=tuple(above), histogram=hist)


def _check_length(value: Any, where: str) -> int:
    """``value`` as a positive int, or an error naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise FcpTuneError(f"{where}: {value!r} is not an integer length")
    if value < 1:
        raise FcpTuneError(f"{where}: {value} is not a positive length")
    if value > MAX_TOKENS:
        raise FcpTuneError(f"{where}: {value:,} tokens is above the largest length fcp-tune takes ({MAX_TOKENS:,})")
    return int(value)


def _check_option(value: Any, name: str, allow_none: bool = True) -> int | None:
    """A positive integer option (``max_len``, ``global_batch_tokens``...), or None if allowed."""
    if value is None and allow_none:
        return None
    return check_tokens(name, value)


@dataclass(frozen=True)
class Workload:
    """An empirical sample of sequence lengths and the token budget of one global batch."""

    name: str
    seqlens: tuple[int, ...]  # document lengths in tokens after max_len handling, all >= 1
    global_batch_tokens: int  # tokens per global batch; the sampler fills up to this
    max_len: int | None  # maximum context length applied at load time (None: none)
    source: str  # where it came from (path or built-in spec), for provenance

    def __post_init__(self) -> None:
        lens = tuple(_check_length(v, f"{self.source}: seqlens[{i}]") for i, v in enumerate(self.seqlens))
        if not lens:
            raise FcpTuneError(f"{self.source}: empty workload (no sequence lengths)")
        object.__setattr__(self, "seqlens", lens)
        object.__setattr__(self, "global_batch_tokens", _check_option(self.global_batch_tokens,
                                                                      "global_batch_tokens", False))
        object.__setattr__(self, "max_len", _check_option(self.max_len, "max_len"))
        if self.max_len is not None and max(lens) > self.max_len:
            raise FcpTuneError(f"{self.source}: a sequence of {max(lens)} tokens exceeds max_len {self.max_len}")

    def stats(self, thresholds: Sequence[int] | None = None) -> WorkloadStats:
        """Summary statistics; ``thresholds`` default to :func:`default_thresholds` of the max length."""
        return compute_stats(self.seqlens, thresholds)

    def seqlens_sha256(self) -> str:
        """Digest of the sample (int64 little-endian), to pin a workload in run records."""
        return hashlib.sha256(np.asarray(self.seqlens, dtype="<i8").tobytes()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: provenance, budget and stats, without the sample itself."""
        return {"name": self.name, "source": self.source, "global_batch_tokens": self.global_batch_tokens,
                "max_len": self.max_len, "seqlens_sha256": self.seqlens_sha256(), "stats": self.stats().to_dict()}

    def to_document(self) -> dict[str, Any]:
        """The full versioned ``fcp-tune/workload`` mapping; :func:`load_workload` reads it back."""
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "name": self.name,
                "global_batch_tokens": self.global_batch_tokens, "max_len": self.max_len,
                "seqlens": list(self.seqlens)}


@dataclass(frozen=True)
class _Raw:
    """What a loader found: lengths plus anything the file itself says."""

    lengths: list[int]
    name: str
    global_batch_tokens: int | None = None
    max_len: int | None = None


def default_workload_path() -> Path:
    """The bundled default workload (many short documents beside a few longer than one rank's
    token budget, sized for a CPU run)."""
    return Path(str(resources.files("fcp_tune") / "data" / "default_workload.yaml"))


def load_workload(spec: str, *, global_batch_tokens: int | None = None, max_len: int | None = None,
                  long_docs: str = "split", chars_per_token: float = 4.0, field: str | None = None,
                  text_field: str | None = None, glob: str = "**/*.txt", seed: int = 0) -> Workload:
    """Load a workload from a file, a directory, a dataset or a built-in (see docs/WORKLOADS.md).

    Built-in names (``lognormal``, ``bimodal``, ``uniform``, optionally ``:k=v,...``) take
    precedence over same-named files; write ``./lognormal`` for such a file. Arguments
    override what a workload document says. Documents longer than ``max_len`` are split
    into ``max_len`` pieces plus a remainder (``long_docs="split"``) or truncated. The
    budget defaults to ``max(4 * longest, 65536)`` tokens and must hold the longest sequence.
    """
    if long_docs not in LONG_DOCS:
        raise FcpTuneError(f"long_docs must be one of {', '.join(LONG_DOCS)}, got {long_docs!r}")
    if isinstance(chars_per_token, bool) or not isinstance(chars_per_token, (int, float)) \
            or not math.isfinite(chars_per_token) or chars_per_token <= 0:
        raise FcpTuneError(f"chars_per_token must be a positive number, got {chars_per_token!r}")
    max_len = _check_option(max_len, "max_len")
    global_batch_tokens = _check_option(global_batch_tokens, "global_batch_tokens")
    seed = check_seed("seed", seed)
    if field is not None and text_field is not None:
        raise FcpTuneError("give field or text_field, not both")

    head = spec.partition(":")[0]
    path = Path(spec)
    if (field is not None or text_field is not None) and (head in BUILTINS or path.is_dir()):
        raise FcpTuneError(f"{spec}: --field/--text-field apply to .jsonl files only")
    if head in BUILTINS:
        raw, source = _Raw(_builtin(spec, seed), spec), f"builtin:{spec} (seed={seed})"
    elif path.is_dir():
        raw, source = _from_directory(path, glob, chars_per_token), str(path)
    elif path.exists() and not path.is_file():  # a FIFO or a device would block or never end
        raise FcpTuneError(f"{spec}: not a regular file")
    elif path.exists():
        raw, source = _from_file(path, field, text_field, chars_per_token), str(path)
    elif ":" in spec and "/" not in head:
        raise FcpTuneError(f"unknown built-in workload {head!r} (built-ins: {', '.join(BUILTINS)})")
    else:
        raise FcpTuneError(f"{spec}: no such file or directory, and not a built-in "
                           f"workload ({', '.join(BUILTINS)})")
    if not raw.lengths:
        raise FcpTuneError(f"{source}: empty workload (no sequence lengths)")

    cap = max_len if max_len is not None else raw.max_len
    lengths = raw.lengths if cap is None else _apply_max_len(raw.lengths, cap, long_docs)
    longest = max(lengths)
    budget = global_batch_tokens or raw.global_batch_tokens or max(4 * longest, MIN_DEFAULT_BATCH_TOKENS)
    if budget < longest:
        raise FcpTuneError(f"{source}: global_batch_tokens {budget} is smaller than the longest sequence "
                           f"({longest} tokens); lower max_len or raise global_batch_tokens")
    return Workload(name=raw.name, seqlens=tuple(lengths), global_batch_tokens=budget, max_len=cap, source=source)


def _apply_max_len(lengths: Sequence[int], max_len: int, long_docs: str) -> list[int]:
    """Split documents longer than ``max_len`` into full pieces plus a remainder, or truncate them."""
    if long_docs == "truncate":
        return [min(n, max_len) for n in lengths]
    out: list[int] = []
    for n in lengths:
        full, rest = divmod(n, max_len)
        out.extend([max_len] * full)
        if rest:
            out.append(rest)
    return out


def _builtin(spec: str, seed: int) -> list[int]:
    """Draw a built-in distribution ``name[:k=v,...]`` with a seeded numpy Generator."""
    name, _, rest = spec.partition(":")
    params = dict(BUILTINS[name])
    seen: set[str] = set()
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, text = (s.strip() for s in item.partition("="))
        if not eq:
            raise FcpTuneError(f"built-in {name}: parameter {item!r} is not key=value")
        if key not in params:
            raise FcpTuneError(f"built-in {name}: unknown parameter {key!r} (known: {', '.join(params)})")
        if key in seen:
            raise FcpTuneError(f"built-in {name}: parameter {key!r} given twice")
        seen.add(key)
        try:
            value = float(text)
        except ValueError:
            raise FcpTuneError(f"built-in {name}: {key}={text!r} is not a number") from None
        if not math.isfinite(value) or (key in _INT_PARAMS and not value.is_integer()):
            raise FcpTuneError(f"built-in {name}: {key}={text!r} must be a finite "
                               f"{'integer' if key in _INT_PARAMS else 'number'}")
        params[key] = int(value) if key in _INT_PARAMS else value

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise FcpTuneError(f"built-in {name}: need {what}")

    p, rng = params, np.random.default_rng(seed)
    need(1 <= p["n"] <= MAX_DOCUMENTS, f"1 <= n <= {MAX_DOCUMENTS:,}")
    for key in ("lo", "hi", "min", "max", "median", "short_mean", "long_mean"):
        need(p.get(key, 0) <= MAX_TOKENS, f"{key} <= {MAX_TOKENS:,}")
    if name == "uniform":
        need(1 <= p["lo"] <= p["hi"], "1 <= lo <= hi")
        return rng.integers(p["lo"], p["hi"], size=p["n"], endpoint=True).tolist()
    need(1 <= p["min"] <= p["max"], "1 <= min <= max")
    need(p["sigma"] >= 0, "sigma >= 0")
    if name == "lognormal":
        need(p["median"] > 0, "median > 0")
        x = rng.lognormal(math.log(p["median"]), p["sigma"], size=p["n"])
    else:  # bimodal: two lognormal modes whose means are short_mean / long_mean
        need(p["short_mean"] > 0 and p["long_mean"] > 0, "short_mean > 0 and long_mean > 0")
        need(0 <= p["long_frac"] <= 1, "0 <= long_frac <= 1")
        means = np.where(rng.random(p["n"]) < p["long_frac"], p["long_mean"], p["short_mean"])
        x = rng.lognormal(np.log(means) - p["sigma"] ** 2 / 2, p["sigma"])
    return np.clip(np.rint(x), p["min"], p["max"]).astype(np.int64).tolist()


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FcpTuneError(f"{path}: cannot read: {exc}") from None


def _from_file(path: Path, field: str | None, text_field: str | None, chars_per_token: float) -> _Raw:
    """Dispatch on the suffix: .npy, .jsonl, .json, .yaml/.yml, anything else = integers per line."""
    suffix = path.suffix.lower()
    if (field is not None or text_field is not None) and suffix != ".jsonl":
        raise FcpTuneError(f"{path}: --field/--text-field apply to .jsonl files only")
    if suffix == ".npy":
        return _from_npy(path)
    if suffix == ".jsonl":
        return _from_jsonl(path, field, text_field, chars_per_token)
    if suffix == ".json":
        try:
            data = json.loads(_read_text(path))
        except json.JSONDecodeError as exc:
            raise FcpTuneError(f"{path}: malformed JSON at line {exc.lineno}: {exc.msg}") from None
        return _from_data(data, path)
    if suffix in (".yaml", ".yml"):
        return _from_data(read_yaml(path), path)
    lengths = []
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if text:
            try:
                value = int(text)
            except ValueError:
                raise FcpTuneError(f"{path}: line {lineno}: {text!r} is not an integer length") from None
            lengths.append(_check_length(value, f"{path}: line {lineno}"))
    return _Raw(lengths, path.stem)


def _from_npy(path: Path) -> _Raw:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise FcpTuneError(f"{path}: cannot read .npy: {exc}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iu":
        raise FcpTuneError(f"{path}: .npy dtype {getattr(arr, 'dtype', type(arr).__name__)} is not an integer type")
    if arr.ndim != 1:
        raise FcpTuneError(f"{path}: .npy must be 1-D (one length per document), got shape {arr.shape}")
    flat = arr.ravel()
    bad = np.flatnonzero((flat < 1) | (flat > MAX_TOKENS))
    if bad.size:
        _check_length(int(flat[bad[0]]), f"{path}: element {int(bad[0])}")
    return _Raw(flat.astype(np.int64).tolist(), path.stem)


def _from_data(data: Any, path: Path) -> _Raw:
    """A parsed JSON/YAML value: a list of lengths, a histogram, or a workload document."""
    if isinstance(data, list):
        return _Raw([_check_length(v, f"{path}: item {i}") for i, v in enumerate(data)], path.stem)
    if isinstance(data, dict) and set(data) == {"bins", "counts"}:
        return _Raw(_expand_histogram(data, f"{path}"), path.stem)
    if not isinstance(data, dict) or "schema" not in data:
        raise FcpTuneError(f"{path}: expected a list of lengths, a {{bins, counts}} histogram or a "
                           f"{SCHEMA} document, got {type(data).__name__}")
    doc = check_document(data, SCHEMA, (SCHEMA_VERSION,), source=str(path))
    unknown = sorted(set(doc) - _DOC_KEYS)
    if unknown:
        raise FcpTuneError(f"{path}: unknown field {unknown[0]!r} in {SCHEMA} document")
    if ("seqlens" in doc) == ("histogram" in doc):
        raise FcpTuneError(f"{path}: a {SCHEMA} document needs exactly one of 'seqlens' or 'histogram'")
    if "seqlens" in doc:
        if not isinstance(doc["seqlens"], list):
            raise FcpTuneError(f"{path}: seqlens must be a list of lengths")
        lengths = [_check_length(v, f"{path}: seqlens[{i}]") for i, v in enumerate(doc["seqlens"])]
    else:
        lengths = _expand_histogram(doc["histogram"], f"{path}: histogram")
    name = doc.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise FcpTuneError(f"{path}: name must be a non-empty string")
    try:
        budget = _check_option(doc.get("global_batch_tokens"), "global_batch_tokens")
        cap = _check_option(doc.get("max_len"), "max_len")
    except FcpTuneError as exc:
        raise FcpTuneError(f"{path}: {exc}") from None
    return _Raw(lengths, name, budget, cap)


def _expand_histogram(hist: Any, where: str) -> list[int]:
    """Expand ``{bins, counts}`` (bin edges, ``len(counts) + 1`` of them; bin i is the half-open
    ``[bins[i], bins[i+1])``) into ``counts[i]`` lengths per bin, evenly spread over the bin:
    ``lo + (2j+1)(hi-lo) // (2c)`` for ``j < c``, raised to at least 1."""
    if not isinstance(hist, dict) or set(hist) != {"bins", "counts"}:
        raise FcpTuneError(f"{where}: a histogram is a mapping with exactly 'bins' and 'counts'")
    bins, counts = hist["bins"], hist["counts"]
    if not isinstance(bins, list) or not isinstance(counts, list) or len(bins) != len(counts) + 1:
        raise FcpTuneError(f"{where}: bins must be a list of len(counts) + 1 bin edges")
    for i, b in enumerate(bins):
        if isinstance(b, bool) or not isinstance(b, int) or not 0 <= b <= MAX_TOKENS + 1:
            raise FcpTuneError(f"{where}: bins[{i}] {b!r} is not an integer in [0, {MAX_TOKENS + 1:,}]")
        if i and b <= bins[i - 1]:
            raise FcpTuneError(f"{where}: bins must increase strictly (bins[{i}] = {b} <= {bins[i - 1]})")
    out: list[int] = []
    for i, c in enumerate(counts):
        if isinstance(c, bool) or not isinstance(c, int) or c < 0:
            raise FcpTuneError(f"{where}: counts[{i}] {c!r} is not a non-negative integer")
    if sum(counts) > MAX_DOCUMENTS:
        raise FcpTuneError(f"{where}: {sum(counts):,} documents is above the most fcp-tune takes ({MAX_DOCUMENTS:,})")
    for i, c in enumerate(counts):
        lo, hi = bins[i], bins[i + 1]
        out.extend(max(1, lo + (2 * j + 1) * (hi - lo) // (2 * c)) for j in range(c))
    return out


def _from_jsonl(path: Path, field: str | None, text_field: str | None, chars_per_token: float) -> _Raw:
    """One JSON object per line: an integer token field, or a text field counted in characters.

    The mode is fixed by the options or, failing those, by the first record: the first of
    :data:`TOKEN_FIELDS` it has, else ``"text"``. Empty texts (0 tokens) are skipped.
    """
    lengths: list[int] = []
    key, is_text = field or text_field, text_field is not None
    for lineno, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}: line {lineno}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise FcpTuneError(f"{where}: malformed JSON: {exc.msg}") from None
        if not isinstance(rec, dict):
            raise FcpTuneError(f"{where}: expected a JSON object, got {type(rec).__name__}")
        if key is None:
            key = next((f for f in TOKEN_FIELDS if f in rec), "text")
            is_text = key == "text"
        if key not in rec:
            raise FcpTuneError(f"{where}: no field {key!r}")
        if not is_text:
            lengths.append(_check_length(rec[key], f"{where}: field {key!r}"))
        elif not isinstance(rec[key], str):
            raise FcpTuneError(f"{where}: field {key!r} is not a string")
        elif rec[key]:
            lengths.append(math.ceil(len(rec[key]) / chars_per_token))
    return _Raw(lengths, path.stem)


def _from_directory(path: Path, glob: str, chars_per_token: float) -> _Raw:
    """Each file matching ``glob`` (sorted) is one document; empty files are skipped."""
    try:
        files = sorted(p for p in path.glob(glob) if p.is_file())
    except (ValueError, NotImplementedError) as exc:
        raise FcpTuneError(f"{path}: bad glob {glob!r}: {exc}") from None
    if not files:
        raise FcpTuneError(f"{path}: empty workload (no files match {glob!r})")
    lengths = []
    for f in files:
        try:
            chars = len(f.read_text(encoding="utf-8", errors="replace"))
        except OSError as exc:
            raise FcpTuneError(f"{f}: cannot read: {exc}") from None
        if chars:
            lengths.append(math.ceil(chars / chars_per_token))
    return _Raw(lengths, path.name)


class BatchSampler:
    """Seeded global batches: ``batch(step)`` is a ``list[int]`` of sequence lengths whose sum
    fills ``global_batch_tokens``.

    Lengths are drawn with replacement from ``workload.seqlens`` until the next one would
    overflow; a batch always has at least one sequence. The draw depends on ``(seed, step)``
    only, so every rank derives the same batch without communication.
    """

    _CHUNK = 256  # draws per numpy call; fixed, so batches never depend on how many were needed

    def __init__(self, workload: Workload, seed: int = 0) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise FcpTuneError(f"seed must be a non-negative integer, got {seed!r}")
        self.workload = workload
        self.seed = seed
        self._lens = np.asarray(workload.seqlens, dtype=np.int64)

    def batch(self, step: int) -> list[int]:
        """The global batch of ``step`` (>= 0)."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise FcpTuneError(f"step must be a non-negative integer, got {step!r}")
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, step]))
        budget, total, out = self.workload.global_batch_tokens, 0, []
        while True:
            draw = self._lens[rng.integers(0, len(self._lens), size=self._CHUNK)]
            csum = total + np.cumsum(draw)
            fits = int(np.searchsorted(csum, budget, side="right"))
            if not out and fits == 0:
                return [int(draw[0])]
            out.extend(draw[:fits].tolist())
            if fits < self._CHUNK:
                return out
            total = int(csum[-1])

    def batches(self, n: int, start: int = 0) -> list[list[int]]:
        """Batches of steps ``start .. start + n - 1``."""
        if n < 0:
            raise FcpTuneError(f"n must be >= 0, got {n}")
        return [self.batch(start + i) for i in range(n)]
