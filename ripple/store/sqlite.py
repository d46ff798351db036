"""The SQLite file: foreign-file checks, the writer lock, connections and row decoding.

Traps handled here (DESIGN §13): ``sqlite3.connect`` creates missing files and ``journal_mode=WAL`` rewrites a file's
header, so a file is inspected read-only (``mode=ro``) and its ``application_id`` checked before anything writes to it.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import msgspec

from ripple.core.events import EMPTY_META, Event, Meta
from ripple.errors import NotARippleDatabaseError, WriterLockedError
from ripple.migrations import APPLICATION_ID, check_version

Durability = Literal["full", "normal"]
SQLITE_MAGIC = b"SQLite format 3\x00"

_decode = msgspec.json.Decoder().decode
_decode_meta = msgspec.json.Decoder(Meta).decode


def uri(path: str | os.PathLike[str], mode: str) -> str:
    return f"file:{urllib.parse.quote(os.fspath(Path(path).absolute()))}?mode={mode}"


def inspect_file(path: str | os.PathLike[str]) -> int | None:
    """Return the schema version of an existing ripple file, or ``None`` for a new (missing or 0-byte) one.

    Never writes to the file. Raises :class:`NotARippleDatabaseError` or :class:`SchemaVersionError`.
    """
    p = Path(path)
    if not p.exists() or p.stat().st_size == 0:
        return None
    if p.is_dir():
        raise NotARippleDatabaseError(f"{p} is a directory, not a ripple database")
    with p.open("rb") as f:
        if f.read(16) != SQLITE_MAGIC:
            raise NotARippleDatabaseError(f"{p} is not a SQLite database (and so not a ripple database)")
    try:
        conn = sqlite3.connect(uri(p, "ro"), uri=True)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise NotARippleDatabaseError(f"{p} cannot be read as a SQLite database: {exc}") from None
    if app_id != APPLICATION_ID:
        raise NotARippleDatabaseError(
            f"{p} is a SQLite database but not a ripple database (application_id {app_id:#x}); it was left untouched"
        )
    check_version(version, str(p))
    return version


class WriterLock:
    """An exclusive ``flock`` on ``DB.lock`` naming the holder's pid: one writer per file, across processes."""

    def __init__(self, db_path: str | os.PathLike[str]) -> None:
        self.path = Path(f"{os.fspath(db_path)}.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = self._read_pid(fd)
            os.close(fd)
            holder = f"process {pid}" if pid else "another process"
            raise WriterLockedError(
                f"{self.path.with_suffix('')} is already open for writing by {holder} (lock {self.path})",
                pid=pid,
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    @staticmethod
    def _read_pid(fd: int) -> int | None:
        try:
            return int(os.pread(fd, 32, 0).decode().strip() or 0) or None
        except (OSError, ValueError):
            return None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def connect_writer(path: str | os.PathLike[str], durability: Durability) -> sqlite3.Connection:
    new = not Path(path).exists() or Path(path).stat().st_size == 0
    conn = sqlite3.connect(uri(path, "rwc"), uri=True, isolation_level=None, check_same_thread=False)
    if new:
        # Before the first table (and WAL mode): compaction then gives space back in small steps. Only on a new
        # file: on an existing one the pragma rewrites the header even when the mode is unchanged, and the mode
        # cannot change without a VACUUM anyway (`ripple compact` converts old files; ripple.store.retention).
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
    # Auto-checkpoints run inside COMMIT and cause latency spikes; ripple runs PASSIVE ones in the background.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("PRAGMA journal_size_limit=67108864")
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA cache_size=-32768")
    return conn


def connect_reader(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A read-only connection (used in threads by the offline tool and the checkpointer)."""
    conn = sqlite3.connect(uri(path, "ro"), uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


def connect_checkpointer(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A connection that only runs PASSIVE checkpoints (copies WAL pages into the file; never appends)."""
    conn = sqlite3.connect(uri(path, "rw"), uri=True, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def decode_json(text: str | bytes | None) -> Any:
    return None if text is None else _decode(text)


def row_to_event(row: tuple[Any, ...] | sqlite3.Row) -> Event:
    """A row selected with ``ripple.store.sql.EVENT_COLUMNS`` as an :class:`Event`."""
    return rows_to_events([row])[0]


def rows_to_events(rows: Iterable[Any]) -> list[Event]:
    """A page of rows selected with ``EVENT_COLUMNS`` as events: :func:`row_to_event` inlined into one loop (a call
    less per row: ~7 % of reading a rebuild's pages, measured)."""
    decode, decode_meta, empty = _decode, _decode_meta, EMPTY_META
    return [
        Event(seq, ts, kind, scope, key, op, event_type, version,
              None if old is None else decode(old),
              None if new is None else decode(new),
              empty if meta == "{}" else decode_meta(meta))
        for seq, ts, kind, scope, key, op, event_type, version, old, new, meta in rows
    ]  # fmt: skip
