"""Atomic file writes and schema-checked YAML reads, shared by every file fcp-tune writes.

Every document fcp-tune writes carries ``schema`` (what it is, e.g. ``fcp-tune/policy``)
and ``schema_version`` (an integer). Readers name the file and the problem in one line
when either is off.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import yaml

from fcp_tune.errors import FcpTuneError


def plain(value: Any) -> Any:
    """``value`` as plain YAML/JSON data: str/int/float/bool/None, lists and str-keyed dicts.

    The one "make YAML-safe" helper: numpy scalars become Python numbers, mappings dicts,
    tuples lists; anything else its ``str``.
    """
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        value = value.item()  # numpy scalars
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` so readers see either the old file or the whole new one.

    The text goes to a temporary file in the same directory, is flushed and fsynced,
    then renamed over the target (``os.replace`` is atomic on POSIX). Parent
    directories are created. A symbolic link is written through (its target is
    replaced, the link stays), as editors do.
    """
    target = Path(path)
    if target.is_symlink():
        target = target.resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp makes the file 0600; give it the mode a plain open() would (0666 - umask).
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return target


def dump_yaml(data: Mapping[str, Any]) -> str:
    """Serialise a mapping to block-style YAML, keys in insertion order."""
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None, width=100)


def write_yaml(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Atomically write ``data`` as YAML to ``path``."""
    return atomic_write_text(path, dump_yaml(data))


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Read a YAML file; a missing, unreadable or malformed file raises ``FcpTuneError``."""
    p = Path(path)
    if not p.is_file():
        raise FcpTuneError(f"{p}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FcpTuneError(f"{p}: cannot read: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise FcpTuneError(f"{p}: malformed YAML{where}: {problem}") from None


def read_document(
    path: str | os.PathLike[str], schema: str, supported_versions: tuple[int, ...]
) -> dict[str, Any]:
    """Read a versioned fcp-tune YAML document and check its ``schema`` and ``schema_version``."""
    data = read_yaml(path)
    return check_document(data, schema, supported_versions, source=str(path))


def check_document(
    data: Any, schema: str, supported_versions: tuple[int, ...], source: str = "<document>"
) -> dict[str, Any]:
    """Check an already-parsed document's ``schema`` and ``schema_version`` fields."""
    if not isinstance(data, dict):
        raise FcpTuneError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    got = data.get("schema")
    if got != schema:
        raise FcpTuneError(f"{source}: schema is {got!r}, expected {schema!r}")
    version = data.get("schema_version")
    if isinstance(version, bool) or version not in supported_versions:
        raise FcpTuneError(
            f"{source}: unsupported schema_version {version!r} for {schema} "
            f"(supported: {', '.join(map(str, supported_versions))})"
        )
    return data


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's bytes (for provenance records)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
