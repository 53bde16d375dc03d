"""Optuna storage from a command-line string: in memory, SQLite, or a journal file.

``sqlite:///path.db`` (any SQLAlchemy URL) or ``journal:path.log`` (a file that several
processes, or machines sharing a file system, can append to). Both make a search resume
after an interrupt and let several workers search one study together, and both open in
Optuna's own tools (``optuna.load_study``, ``trials_dataframe()``, optuna-dashboard), where
each trial carries its policy and prediction as user attributes (:mod:`.attrs`).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

from fcp_tune.errors import FcpTuneError
from fcp_tune.redact import redact

# A journal write holds ``PATH.lock`` for milliseconds; one older than this was left by a
# search that was killed (``kill -9``) while writing, and would cost Optuna's 30 s grace period.
STALE_LOCK_S = 10.0
# How long an SQLite write waits for another worker's transaction (the driver's default is 5 s,
# which a worker descheduled on a loaded machine can exceed).
SQLITE_BUSY_TIMEOUT_S = 60.0
# What SQLAlchemy/Alembic say when two workers create a new database's tables at once.
_CREATION_RACES = ("already exists", "UNIQUE constraint failed", "database is locked")


def open_storage(spec: Optional[str]) -> Any:
    """An Optuna storage for ``spec`` (None: in memory); a clear error if it cannot be used.

    Error messages name the storage with any password redacted.
    """
    if spec is None:
        return None
    try:
        return _open(spec)
    except FcpTuneError as exc:
        raise FcpTuneError(redact(str(exc))) from None


def _open(spec: str) -> Any:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    if spec.startswith("journal:"):
        path = Path(spec[len("journal:") :])
        _check_dir(path, spec)
        if path.exists() and not os.access(path, os.R_OK | os.W_OK):
            raise FcpTuneError(f"storage {spec}: file is not readable and writable")
        check_stale_lock(path, spec)
        try:
            return JournalStorage(JournalFileBackend(str(path)))
        except Exception as exc:  # noqa: BLE001 - name the storage, not the library
            raise FcpTuneError(f"storage {spec}: cannot open: {exc}") from None
    if "://" not in spec:
        raise FcpTuneError(f"storage {spec!r}: expected sqlite:///PATH (or another database URL) or journal:PATH")
    if spec.startswith("sqlite:///"):
        path = Path(spec[len("sqlite:///") :])
        _check_dir(path, spec)
        if path.exists():
            try:
                with open(path, "rb") as fh:
                    head = fh.read(16)
            except OSError as exc:
                raise FcpTuneError(f"storage {spec}: cannot read: {exc.strerror}") from None
            if head and not head.startswith(b"SQLite format 3"):
                raise FcpTuneError(f"storage {spec}: {path} is not an SQLite database")
    for attempt in range(5):
        try:
            if spec.startswith("sqlite:"):
                storage = optuna.storages.RDBStorage(
                    spec, engine_kwargs={"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}})
                serialise_sqlite_transactions(storage.engine)
                return storage
            return optuna.storages.RDBStorage(spec)
        except Exception as exc:  # noqa: BLE001
            # Workers opening a new database at once race to create its tables: the loser retries.
            if any(m in str(exc) for m in _CREATION_RACES) and attempt < 4:
                time.sleep(0.2 * (attempt + 1))
                continue
            raise FcpTuneError(f"storage {spec}: cannot open: {str(exc).splitlines()[0]}") from None


def serialise_sqlite_transactions(engine: Any) -> None:
    """Make every transaction on ``engine`` (SQLite) take the write lock when it begins.

    Python's sqlite3 driver begins a transaction only at the first write, so Optuna's
    read-then-update steps are not atomic across processes: two workers can both read an
    enqueued trial as WAITING and both run it (the second then fails with "Cannot tell a
    COMPLETE trial"; optuna/optuna#4621). ``BEGIN IMMEDIATE`` makes the read and the update
    one transaction that other workers wait for (SQLAlchemy's documented pysqlite recipe).
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself, below

    @event.listens_for(engine, "begin")
    def _begin_immediate(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened while creating the tables get the handlers too


def _check_dir(path: Path, spec: str) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise FcpTuneError(f"storage {spec}: directory {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise FcpTuneError(f"storage {spec}: directory {parent} is not writable")


def check_stale_lock(path: Path, spec: str, now: Optional[float] = None) -> None:
    """Refuse a journal whose ``.lock`` is older than :data:`STALE_LOCK_S`, saying how to clear it."""
    lock = Path(str(path) + ".lock")
    try:
        age = (time.time() if now is None else now) - os.lstat(lock).st_mtime
    except FileNotFoundError:
        return
    if age > STALE_LOCK_S:
        raise FcpTuneError(
            f"storage {spec}: {lock} is a stale lock ({age:.0f} s old) left by a search that was killed; "
            f"if no other search uses this storage, remove it (rm {lock}) and run again"
        )
