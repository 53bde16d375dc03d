"""Atomic file writes and schema-checked YAML reads, shared by every file fcp-tune writes.

Every document fcp-tune writes carries ``schema`` (what it is, e.g. ``fcp-tune/policy``)
and ``schema_version`` (an integer). Readers name the file and the problem in one line
when either is off.
"""

from __future__ import annotations

import hashlib
import numbers
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Mapping

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


def check_output_path(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """Check, before any work, that ``path`` can be written: absent or a regular file (a link is
    followed), not a directory, in a directory that exists (or can be made) and is writable.

    Returns the path the write will replace (a link's target). Raises ``FcpTuneError`` naming
    ``what`` otherwise; a special file (``/dev/null``, a FIFO, a socket) is refused, never replaced.
    """
    target = Path(path)
    if str(path) == "" or target.name in ("", ".", ".."):
        raise FcpTuneError(f"{what}: {str(path)!r} is not a file name")
    if target.is_symlink():
        target = target.resolve()
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    except NotADirectoryError:
        raise FcpTuneError(f"{what}: {path}: a parent is not a directory") from None
    except OSError as exc:
        raise FcpTuneError(f"{what}: {path}: cannot use: {exc.strerror}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise FcpTuneError(f"{what}: {path} is a directory; give a file name")
        if not stat.S_ISREG(st.st_mode):
            raise FcpTuneError(f"{what}: {path} is not a regular file; refusing to replace it")
    _check_creatable(target.parent, path, what)
    return target


def _check_creatable(where: Path, path: str | os.PathLike[str], what: str) -> None:
    """Raise unless ``where`` is, or mkdir can make it, a writable directory.

    The first existing ancestor of ``where`` decides: it must be a directory this user can
    write and enter.
    """
    probe = where
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise FcpTuneError(f"{what}: {path}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise FcpTuneError(f"{what}: {path}: directory {probe} is not writable")


def check_output_dir(path: str | os.PathLike[str], what: str = "--out") -> Path:
    """Check, before any work, that ``path`` is (or can be made) a writable directory."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise FcpTuneError(f"{what}: {path} exists and is not a directory")
    _check_creatable(target, path, what)
    return target


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write(fh)`` on a temporary file, then rename it over ``path`` (atomic on POSIX).

    Readers see the old file or the whole new one. The temporary file is in the target's
    directory, flushed and fsynced. Parent directories are created. A symbolic link is
    written through (its target is replaced, the link stays), as editors do; anything
    but a regular file or nothing is refused (``/dev/null`` stays a device). An existing
    file keeps its permission bits; a new one gets ``0666 & ~umask`` as from ``open()``.
    """
    target = check_output_path(path, "cannot write")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
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


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_write`)."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda fh: fh.write(data))


def save_png(fig: Any, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Write a matplotlib figure as PNG atomically: no reader sees half a plot."""
    return atomic_write(path, lambda fh: fig.savefig(fh, format="png", dpi=dpi))


def private_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` as a directory only this user can enter (created 0700).

    An existing one must be a real directory (not a link) owned by this user and not
    writable by others; else ``OSError``.
    """
    p = Path(path)
    p.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(p)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise PermissionError(f"{p} is not a private directory of this user")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(p, 0o700)
    return p


def write_private(path: str | os.PathLike[str], text: str) -> Path:
    """Create ``path`` (which must not exist; a link is never followed) with mode 0600 and write ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


# libyaml's parser when PyYAML was built with it: the same safe constructor, ten times faster
# on the bundled profiles (0.1 s each in pure Python).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def dump_yaml(data: Mapping[str, Any]) -> str:
    """Serialise a mapping to block-style YAML, keys in insertion order."""
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None, width=100)


def write_yaml(path: str | os.PathLike[str], data: Mapping[str, Any]) -> Path:
    """Atomically write ``data`` as YAML to ``path``."""
    return atomic_write_text(path, dump_yaml(data))


def read_yaml(path: str | os.PathLike[str]) -> Any:
    """Read a YAML file; a missing, unreadable or malformed file raises ``FcpTuneError``."""
    p = Path(path)
    if p.exists() and not p.is_file():
        raise FcpTuneError(f"{p}: not a regular file")
    if not p.is_file():
        raise FcpTuneError(f"{p}: no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FcpTuneError(f"{p}: cannot read: {exc}") from None
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
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


def error_log_dir() -> Path:
    """Where failure logs go: ``$XDG_CACHE_HOME/fcp-tune/errors`` (default ``~/.cache``), a
    directory only this user can enter; if that cannot be made, ``$TMPDIR/fcp-tune-errors-<uid>``."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    try:
        return private_dir(Path(cache) / "fcp-tune" / "errors")
    except OSError:
        return private_dir(Path(tempfile.gettempdir()) / f"fcp-tune-errors-{os.getuid()}")


def write_error_log(text: str) -> Path:
    """Write ``text`` to a new 0600 file in :func:`error_log_dir` (never through a link, never
    over an existing file); return its path. Raises ``OSError`` when no log can be written."""
    import time

    folder = error_log_dir()
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    for i in range(100):
        path = folder / (f"{stem}.log" if i == 0 else f"{stem}-{i}.log")
        try:
            return write_private(path, text)
        except FileExistsError:
            continue
    raise FileExistsError(f"{folder}: no free log name for {stem}")
