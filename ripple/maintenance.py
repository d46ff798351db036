"""Offline maintenance of a ripple file: ``ripple compact``, ``ripple backup`` and ``ripple restore`` (DESIGN §10).

- :func:`compact_file` moves the floor under the writer lock (no server), with the same steps a live store runs
  (``ripple.store.retention``), then converts a file made before incremental auto-vacuum with one full ``VACUUM``
  (or gives the free pages back), so the file shrinks.
- :func:`backup` copies a file beside a live server without stopping its writes: one read transaction gives a
  consistent snapshot (WAL readers never block the writer), written to a temporary name and renamed, so ``OUT.db``
  is either whole or absent. :func:`rotate` keeps the newest N copies in a folder.
- :func:`restore` copies a backup to a new file and verifies the copy before it takes the target's name.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from ripple.errors import ConflictError, DatabaseFileError, ValidationError
from ripple.offline import Progress, VerifyReport, open_readonly, rebuild_all, verify, writing
from ripple.store import retention, sql
from ripple.store.retention import Blocker
from ripple.store.sqlite import WriterLock, inspect_file

BackupMethod = Literal["backup", "vacuum"]


# ---- compact -----------------------------------------------------------------------------------------------------


class CompactReport(msgspec.Struct, frozen=True):
    """What ``ripple compact`` did (printed as JSON)."""

    earliest_before: int
    earliest: int
    head: int
    removed: int
    seconds: float
    events_per_second: float
    file_bytes_before: int
    file_bytes_after: int
    converted_to_incremental_vacuum: bool
    forced: list[Blocker] = []
    rebuild_pending: list[str] = []


def _file_bytes(path: str | os.PathLike[str]) -> int:
    return sum(Path(f"{os.fspath(path)}{s}").stat().st_size for s in ("", "-wal")
               if Path(f"{os.fspath(path)}{s}").exists())


def compact_file(path: str | os.PathLike[str], before: int, *, force: bool = False,
                 projections: Sequence[Any] = (), progress: Progress | None = None) -> CompactReport:
    """Remove the events below ``before`` after folding them into the base; refuses (``floor_blocked``, nothing
    changed) while a durable reaction or projection still needs them, unless ``force``.

    With ``force``, the projections that fell behind are rebuilt from the base when they are among ``projections``
    (the built-in ones, and the user's with ``--app``), or marked ``rebuilding`` so the next ``serve`` rebuilds them;
    reactions left behind go on from the floor.
    """
    if inspect_file(path) is None:
        raise DatabaseFileError(f"{path}: no such ripple database")
    size_before = _file_bytes(path)
    started = time.perf_counter()
    conn = open_readonly(path)  # bad input is refused before anything opens the file for writing
    try:
        _plan(conn, before, force)
    finally:
        conn.close()
    with writing(path, new_file=False) as conn:
        found = _plan(conn, before, force)
        start = retention.read_floor(conn)
        removed = 0
        while retention.read_floor(conn).earliest < before:
            with _transaction(conn):
                _, n = retention.compact_step(conn, before, retention.OFFLINE_CHUNK)
            removed += n
            if progress is not None:
                progress(n)
        pending = _rebuild_behind(conn, found, projections)
        converted = _reclaim(conn)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        earliest, head = sql.earliest(conn), sql.head(conn)
    seconds = time.perf_counter() - started
    return CompactReport(start.earliest, earliest, head, removed, round(seconds, 3),
                         round(removed / seconds) if seconds > 0 else 0, size_before, _file_bytes(path), converted,
                         found, pending)


def _plan(conn: sqlite3.Connection, before: int, force: bool) -> list[Blocker]:
    retention.check_before(conn, before)
    found = retention.blockers(conn, before)
    if found and not force:
        raise ConflictError(retention.refuse_message(before, found), code="floor_blocked",
                            detail={"blockers": [msgspec.to_builtins(b) for b in found]})
    return found


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _rebuild_behind(conn: sqlite3.Connection, found: list[Blocker], projections: Sequence[Any]) -> list[str]:
    """Rebuild the forced projections we have code for; mark the others for a rebuild when a store next opens."""
    behind = {b.name for b in found if b.kind == "projection"}
    if not behind:
        return []
    known = [p for p in projections if p.name in behind]
    if known:
        rebuild_all(conn, known)
    pending = sorted(behind - {p.name for p in known})
    with _transaction(conn):
        conn.executemany("UPDATE projections SET status = 'rebuilding' WHERE name = ?", [(n,) for n in pending])
    return pending


def _reclaim(conn: sqlite3.Connection) -> bool:
    """Give free pages back; a file without incremental auto-vacuum is converted by one full VACUUM (True)."""
    if retention.auto_vacuum(conn) != "incremental":
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("VACUUM")
        return True
    while retention.free_pages(conn):
        with _transaction(conn):
            retention.vacuum_step(conn, 10_000)
    return False


# ---- backup ------------------------------------------------------------------------------------------------------


class BackupReport(msgspec.Struct, frozen=True):
    """What ``ripple backup`` wrote (printed as JSON)."""

    backup: str
    head: int
    earliest: int
    bytes: int
    seconds: float
    method: str
    removed: list[str] = []



def new_file_target(path: str | os.PathLike[str], command: str, *, leftovers: bool = True) -> Path:
    """Where ``backup``/``restore`` may create a database: a new file in an existing folder, with no ``-wal``,
    ``-shm`` or ``-journal`` left there by a database of that name that is gone (SQLite would apply them to the new
    file: a malformed database, or foreign pages mixed in)."""
    if not os.fspath(path):
        raise DatabaseFileError(f"{command}: the path of the new database is empty")
    out = Path(path)
    if out.exists():
        raise DatabaseFileError(f"{path} already exists; {command} writes only a new file (move it away first)")
    if not out.absolute().parent.is_dir():
        raise DatabaseFileError(f"cannot write {path}: the folder {out.absolute().parent} does not exist")
    found = [f"{path}{s}" for s in ("-wal", "-shm", "-journal") if leftovers and Path(f"{path}{s}").exists()]
    if found:
        raise DatabaseFileError(f"{', '.join(found)} left from a database that is gone would be applied to the "
                                f"new {path}: remove them first")
    return out


def backup(source: str | os.PathLike[str], out: str | os.PathLike[str], *, method: BackupMethod = "backup",
           progress: Callable[[int, int], None] | None = None) -> BackupReport:
    """A consistent copy of ``source`` (served or not) as the new file ``out``, which must not exist.

    ``backup``: SQLite's online backup API, page by page inside one read transaction on the source, so the copy is
    one snapshot however long it takes and the writer never waits (WAL readers do not block writers; the steps only
    keep the copy from monopolising the disk). ``vacuum``: ``VACUUM INTO``, a defragmented copy (slower to write,
    smaller when the source has free pages). ``bench/backup.py`` measures how much each slows a writer.
    """
    out_path = new_file_target(out, "backup")
    started = time.perf_counter()
    src = open_readonly(source)
    partial = out_path.with_name(f".{out_path.name}.partial-{os.getpid()}")
    try:
        if method == "vacuum":
            src.execute("VACUUM INTO ?", (str(partial),))  # one statement, one read transaction
        else:
            src.execute("BEGIN")
            sql.head(src)  # starts the read transaction: every step copies this snapshot
            _backup_pages(src, partial, progress)
            src.execute("COMMIT")
        _single_file(partial)
        head, earliest = _head_and_floor(partial)
        os.replace(partial, out_path)
        _fsync_dir(out_path.absolute().parent)
    except BaseException:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{partial}{suffix}").unlink(missing_ok=True)
        raise
    finally:
        src.close()
    return BackupReport(str(out_path), head, earliest, out_path.stat().st_size,
                        round(time.perf_counter() - started, 3), method)


def _backup_pages(src: sqlite3.Connection, target: Path, progress: Callable[[int, int], None] | None) -> None:
    try:
        dst = sqlite3.connect(target, isolation_level=None)
    except sqlite3.OperationalError as exc:
        raise DatabaseFileError(f"cannot write a database in {target.absolute().parent}: {exc}") from None
    try:
        def report(_status: int, remaining: int, total: int) -> None:
            if progress is not None:
                progress(total - remaining, total)

        # 1,000 pages (4 MiB) a step; the source's open read transaction keeps every step on the same snapshot
        src.backup(dst, pages=1000, progress=report)
    except sqlite3.OperationalError as exc:
        if "unable to open" not in str(exc) and "readonly" not in str(exc) and "disk I/O" not in str(exc):
            raise
        raise DatabaseFileError(f"cannot write a database in {target.absolute().parent}: {exc}") from None
    finally:
        dst.close()


def _single_file(path: Path) -> None:
    """Make the copy one self-contained file (rollback journal mode, synced): nothing to lose beside it."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=DELETE")
        conn.execute("PRAGMA synchronous=FULL")
    finally:
        conn.close()
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _head_and_floor(path: Path) -> tuple[int, int]:
    conn = sqlite3.connect(f"file:{path.absolute()}?mode=ro", uri=True, isolation_level=None)
    try:
        return sql.head(conn), sql.earliest(conn)
    finally:
        conn.close()


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_STAMP = "%Y%m%dT%H%M%S"


def rotation_name(source: str | os.PathLike[str], now: datetime.datetime | None = None) -> str:
    """``<stem>-<UTC time>Z.db``: names that sort by age."""
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime(_STAMP)
    return f"{Path(source).stem}-{stamp}Z.db"


def rotate(source: str | os.PathLike[str], folder: str | os.PathLike[str], keep: int, *,
           method: BackupMethod = "backup") -> BackupReport:
    """Back ``source`` up into ``folder`` under a time-stamped name, then delete all but the newest ``keep`` of its
    backups there (only files named like ours: ``<stem>-YYYYmmddTHHMMSSZ.db``)."""
    if keep < 1:
        raise ValidationError(f"--keep must be at least 1, got {keep}")
    target = Path(folder)
    if target.exists() and not target.is_dir():
        raise DatabaseFileError(f"{folder} is not a folder")
    target.mkdir(parents=True, exist_ok=True)  # a cron line works the first time
    out = target / rotation_name(source)
    if out.exists():
        raise DatabaseFileError(f"{out} already exists (two backups in the same second?)")
    report = backup(source, out, method=method)
    pattern = re.compile(rf"^{re.escape(Path(source).stem)}-\d{{8}}T\d{{6}}Z\.db$")
    ours = sorted(p for p in target.iterdir() if pattern.match(p.name))
    removed = ours[:-keep]
    for old in removed:
        old.unlink()
    return msgspec.structs.replace(report, removed=[str(p) for p in removed])


# ---- restore -----------------------------------------------------------------------------------------------------


def restore(backup_path: str | os.PathLike[str], target: str | os.PathLike[str],
            progress: Progress | None = None) -> VerifyReport:
    """Copy a backup to ``target`` (which must not exist) and verify the copy; a copy that fails verification is
    removed, so ``target`` is created only when sound. Returns the verify report (``report.ok``)."""
    target_path = new_file_target(target, "restore", leftovers=False)
    # A server serving this name (its file deleted) would go on acknowledging writes into the old inode.
    lock = WriterLock(target_path)
    lock.acquire()
    try:
        return _restore_locked(backup_path, new_file_target(target, "restore"), progress)  # again, under the lock
    finally:
        lock.release()


def _restore_locked(backup_path: str | os.PathLike[str], target_path: Path,
                    progress: Progress | None) -> VerifyReport:
    src = open_readonly(backup_path)
    partial = target_path.with_name(f".{target_path.name}.partial-{os.getpid()}")
    try:
        src.execute("BEGIN")
        sql.head(src)
        _backup_pages(src, partial, None)
        src.execute("COMMIT")
        _single_file(partial)
        check = sqlite3.connect(f"file:{partial.absolute()}?mode=ro", uri=True, isolation_level=None)
        try:
            report = verify(check, progress=progress)
        finally:
            check.close()
        if not report.ok:
            raise _Unsound(report)
        os.replace(partial, target_path)
        _fsync_dir(target_path.absolute().parent)
        return report
    except _Unsound as unsound:
        return unsound.report
    finally:
        src.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{partial}{suffix}").unlink(missing_ok=True)


class _Unsound(Exception):
    def __init__(self, report: VerifyReport) -> None:
        self.report = report
