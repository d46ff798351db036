"""The offline tool's engine: read, verify, export, import and replay a ripple file with no server (DESIGN §10).

Synchronous, on plain ``sqlite3`` connections. Read-only work opens the file with ``mode=ro`` and reads in pages, each
in its own short read transaction, so it runs beside a live server without blocking it or growing its WAL. Work that
writes (``import``, ``rebuild``, ``replay``'s target) takes the writer lock first and refuses while a server holds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Literal

import msgspec

from ripple.core.events import Meta
from ripple.core.filter import EVERYTHING, Filter
from ripple.core.validate import MAX_DEPTH, check_raw_depth, validate_key, validate_name, validate_scope
from ripple.errors import DatabaseFileError, OffsetOutOfRangeError, RippleError, ValidationError
from ripple.migrations import LATEST_VERSION, migrate
from ripple.store import postgres, retention, sql
from ripple.store.postgres import is_postgres_url, redact
from ripple.store.sql import EVENT_COLUMNS, STATE_AT
from ripple.store.sqlite import (
    WriterLock,
    connect_reader,
    connect_writer,
    inspect_file,
    uri,
)

PAGE = 2000
Progress = Callable[[int], None]


class ImportedEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One line of an import file, strictly typed."""

    offset: int
    ts: int
    kind: Literal["state", "stream"]
    scope: str
    key: str
    op: Literal["set", "update", "delete", "send"]
    event_type: str
    version: int
    old_value: Any = None
    new_value: Any = None
    meta: Meta = Meta()


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
_decode_import = msgspec.json.Decoder(ImportedEvent).decode


# ---- opening ---------------------------------------------------------------------------------------------------


def open_readonly(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A read-only connection to an existing ripple file; a clear error for anything else."""
    if is_postgres_url(path):
        raise DatabaseFileError(
            f"{redact(str(path))}: this command reads SQLite files only; on PostgreSQL use ripple log/get/export, a "
            "live node's API, or PostgreSQL's own tools (docs/scaling.md)")
    if not Path(path).exists():
        raise DatabaseFileError(f"{path}: no such file")
    if inspect_file(path) is None:
        raise DatabaseFileError(f"{path} is empty: not a ripple database yet")
    return connect_reader(path)


def open_log_reader(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """:func:`open_readonly`, or on a ``postgresql://`` URL a connection to that log (``ripple log/get/export`` read
    PostgreSQL too: their statements are plain reads that ``ripple.store.dialect`` rewrites)."""
    if not is_postgres_url(path):
        return open_readonly(path)
    pg: Any = postgres.connect(str(path))
    if pg.execute("SELECT to_regclass('ripple_schema') IS NOT NULL").fetchone()[0] is not True:
        pg.close()
        raise DatabaseFileError(f"{redact(str(path))} holds no ripple log (no ripple_schema table in its schema)")
    return pg  # type: ignore[no-any-return]


class FloorRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The first line of an export of a compacted log: where the log starts."""

    earliest: int
    stream_earliest: int


class BaseRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A key as of the floor - 1 (a row of the compacted base); ``offset`` is its last event's, ``created`` the
    create offset of its incarnation."""

    scope: str
    key: str
    value: Any
    version: int
    offset: int
    created: int
    ts: int


class PrefixLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """``{"floor": {...}}`` or ``{"base": {...}}``: the lines an export of a compacted log starts with."""

    floor: FloorRecord | None = None
    base: BaseRecord | None = None


def export_lines(conn: sqlite3.Connection, after: int = 0) -> Iterator[bytes]:
    """``ripple export``: every event after ``after`` as JSON lines; a full export (``after=0``) of a compacted log
    starts with its floor and base (:class:`PrefixLine`), which ``import`` reads back."""
    if after == 0:
        floor = retention.read_floor(conn)
        if floor.earliest > 1 or floor.stream_earliest > 1:
            yield from _prefix_lines(conn)
            after = floor.earliest - 1
    yield from event_lines(conn, after=after)


def _prefix_lines(conn: sqlite3.Connection) -> Iterator[bytes]:
    """The floor and every base row, from one read snapshot (a compaction beside it cannot tear the base); the
    events after the floor follow in pages that check the floor did not move past them."""
    conn.execute("BEGIN")
    try:
        floor = retention.read_floor(conn)
        yield _encode(PrefixLine(floor=FloorRecord(floor.earliest, floor.stream_earliest)))
        cursor = conn.execute(
            "SELECT scope, key, value, version, last_seq, created_seq, ts FROM log_base ORDER BY last_seq")
        while rows := cursor.fetchmany(PAGE):
            for scope, key, value, version, seq, created, ts in rows:
                yield _encode(PrefixLine(base=BaseRecord(scope, key, msgspec.Raw(value.encode()), version, seq,
                                                         created, ts)))
    finally:
        conn.execute("COMMIT")


def event_lines(conn: sqlite3.Connection, f: Filter = EVERYTHING, *, after: int = 0, upto: int | None = None,
                page: int = PAGE, actor: str | None = None) -> Iterator[bytes]:
    """Each matching event after ``after`` (up to ``upto``, default the head) as one JSON line, in offset order;
    with ``actor``, only the events written as that token (``meta.actor``, DESIGN §15).

    SQLite builds each line from the stored row (``sql.EVENT_JSON``: the same bytes as a live frame's event), a page
    per short read transaction, so a long export never holds a snapshot open beside a live server.
    """
    if upto is None:
        upto = sql.head(conn)
    while after < upto:
        query, params = sql.events_page(f, after, upto, page,
                                        columns=f"seq, json_extract(meta, '$.actor'), {sql.EVENT_JSON}")
        conn.execute("BEGIN")
        try:
            rows = conn.execute(query, params).fetchall()
            earliest = retention.read_floor(conn).for_kind(f.kind)
        finally:
            conn.execute("COMMIT")
        if after < earliest - 1:  # compacted before (or while) we read: never skip events silently
            raise OffsetOutOfRangeError(
                f"offset {after + 1} is older than the earliest offset kept ({earliest}); the log before it was "
                "compacted" + (" while it was read" if after else ""),
                detail={"after": after, "earliest": earliest},
            )
        if not rows:
            return
        for _, written_by, line in rows:
            if actor is None or written_by == actor:
                yield line.encode()
        after = rows[-1][0]


# ---- get -------------------------------------------------------------------------------------------------------


def get_value(conn: sqlite3.Connection, scope: str, key: str, at: int | None) -> tuple[bool, bytes]:
    """``(found, value JSON)`` of a key now or as of offset ``at``."""
    validate_scope(scope)
    validate_key(key)
    if at is None:
        row = conn.execute(sql.SELECT_KEY, (scope, key)).fetchone()
        return (False, b"null") if row is None else (True, row[0].encode())
    check_at(conn, at)
    row = conn.execute(sql.SELECT_KEY_AT, (scope, key, at)).fetchone()
    if row is None or row[3] == "deleted":
        return False, b"null"
    return True, row[0].encode()


def check_after(conn: sqlite3.Connection, after: int, option: str = "--after ") -> None:
    """Refuse an ``--after`` outside the log, by the rule the server applies (``check_after_range``)."""
    from ripple.subscriptions.catchup import check_after_range

    conn.execute("BEGIN")
    try:
        head, earliest = sql.head(conn), sql.earliest(conn)
    finally:
        conn.execute("COMMIT")
    check_after_range(after, earliest=earliest, head=head, option=option)


def check_filter(scopes: Sequence[str], keys: Sequence[str]) -> None:
    """Names in a log filter obey the rules of names (as ``read_events`` checks them): a typo is an error, not an
    empty result."""
    for scope in scopes:
        validate_scope(scope)
    for key in keys:
        validate_key(key)


def check_at(conn: sqlite3.Connection, at: int, option: str = "--at") -> None:
    """``at`` must be an offset the file can answer for: from the floor - 1 (the compacted base) to the head."""
    head = sql.head(conn)
    earliest = sql.earliest(conn)
    if at > head or at < 0:
        raise ValidationError(f"{option} {at} is outside the log ({earliest - 1}..{head})")
    if at < earliest - 1:
        raise OffsetOutOfRangeError(
            f"{option} {at} is older than the earliest offset kept ({earliest}); the log before it was compacted, "
            f"so the file answers for offsets {earliest - 1}..{head}",
            detail={"at": at, "earliest": earliest, "head": head},
        )


class EntryRecord(msgspec.Struct, frozen=True):
    key: str
    value: msgspec.Raw
    version: int
    offset: int


def scope_lines(conn: sqlite3.Connection, scope: str, at: int | None) -> Iterator[bytes]:
    """Every entry of a scope, in first-insertion order, as JSON lines."""
    validate_scope(scope)
    if at is not None:
        check_at(conn, at)
    last = 0
    while True:
        conn.execute("BEGIN")
        try:
            if at is None:
                rows = conn.execute(sql.LIST_SCOPE, (scope, last, PAGE)).fetchall()
            else:
                rows = conn.execute(sql.LIST_SCOPE_AT, sql.list_scope_at_params(scope, at, last, PAGE)).fetchall()
        finally:
            conn.execute("COMMIT")
        for key, value, version, seq, created in rows:
            yield _encode(EntryRecord(key, msgspec.Raw(value.encode()), version, seq))
            last = created
        if len(rows) < PAGE:
            return


# ---- verify ----------------------------------------------------------------------------------------------------


class Fault(msgspec.Struct, frozen=True):
    check: str
    message: str
    offset: int | None = None


NOTE = "note"  # the check of a Fault that is only something to know (e.g. a projection verify could not compare)


class VerifyReport(msgspec.Struct):
    head: int = 0
    events: int = 0
    keys: int = 0
    state_hash: str = ""
    faults: list[Fault] = []
    checked: list[str] = []
    notes: list[str] = []

    @property
    def ok(self) -> bool:
        return not self.faults


def canonical_json(value: Any) -> bytes:
    """Sorted object keys, no spaces, non-ASCII unescaped (DESIGN §10)."""
    return msgspec.json.encode(value, order="sorted")


def state_hash(rows: Iterator[tuple[str, str, str]]) -> tuple[str, int]:
    """sha256 of ``scope\\tkey\\t<canonical JSON>`` lines sorted by scope then key, joined by ``\\n``."""
    h = hashlib.sha256()
    n = 0
    for scope, key, value in rows:
        if n:
            h.update(b"\n")
        h.update(f"{scope}\t{key}\t".encode() + canonical_json(_decode(value)))
        n += 1
    return h.hexdigest(), n


MAX_FAULTS = 100


def verify(conn: sqlite3.Connection, *, progress: Progress | None = None,
           extra: Sequence[Callable[[sqlite3.Connection, int], list[Fault]]] = ()) -> VerifyReport:
    """Run every check on one consistent snapshot of the file and return what it found."""
    report = VerifyReport()
    report.checked.append("integrity")
    try:
        integrity = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:  # some damage makes SQLite raise rather than report
        integrity = [str(exc)]
    if integrity != ["ok"]:
        report.faults.append(Fault("integrity", "; ".join(integrity[:5])))
        return report
    try:
        return _verify_snapshot(conn, report, progress, extra)
    except sqlite3.DatabaseError as exc:
        report.faults.append(Fault("integrity", f"SQLite could not read the file: {exc}"))
        return report


def _verify_snapshot(conn: sqlite3.Connection, report: VerifyReport, progress: Progress | None,
                     extra: Sequence[Callable[[sqlite3.Connection, int], list[Fault]]]) -> VerifyReport:
    conn.execute("BEGIN")
    try:
        report.head = sql.head(conn)
        report.events = int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
        _check_gapless(conn, report)
        _check_chain_and_state(conn, report, progress)
        for check in extra:
            for fault in check(conn, report.head):
                if fault.check == NOTE:
                    report.notes.append(fault.message)
                else:
                    report.faults.append(fault)
        report.state_hash, report.keys = state_hash(
            iter(conn.execute("SELECT scope, key, value FROM state ORDER BY scope, key"))
        )
    finally:
        conn.execute("COMMIT")
    del report.faults[MAX_FAULTS:]
    return report


def _check_gapless(conn: sqlite3.Connection, report: VerifyReport) -> None:
    """Gapless from the floor to the head. Below the stream floor only stream events were removed, and those gaps
    are expected (the state events there are checked by the chain)."""
    report.checked.append("offsets")
    floor = retention.read_floor(conn)
    streams = floor.stream_earliest
    first = conn.execute("SELECT min(seq) FROM events").fetchone()[0]
    if first is not None and first != floor.earliest and not floor.earliest < first <= streams:
        report.faults.append(Fault("offsets", f"the log starts at offset {first}, not {floor.earliest}", first))
    for prev, seq in conn.execute(
        "SELECT prev, seq FROM (SELECT seq, lag(seq) OVER (ORDER BY seq) AS prev FROM events) WHERE seq != prev + 1"
    ):
        if seq <= streams:
            continue  # stream events trimmed below the stream floor
        missing = f"{prev + 1}" if seq == prev + 2 else f"{prev + 1}..{seq - 1}"
        report.faults.append(Fault("offsets", f"gap: offset {missing} is missing (between {prev} and {seq})",
                                   prev + 1))
    below = conn.execute("SELECT min(seq) FROM events WHERE seq < ?", (floor.earliest,)).fetchone()[0]
    if below is not None:
        report.faults.append(Fault("offsets", f"offset {below} is below the floor ({floor.earliest})", below))
    stream = conn.execute("SELECT min(seq) FROM events WHERE seq < ? AND kind = 'stream'", (streams,)).fetchone()[0]
    if stream is not None:
        report.faults.append(Fault("offsets", f"stream event {stream} is below the stream floor ({streams})", stream))
    for scope, key, last in conn.execute(
        "SELECT scope, key, last_seq FROM log_base WHERE last_seq >= ? OR created_seq > last_seq OR version < 1 "
        "LIMIT 10", (floor.earliest,)
    ):
        report.faults.append(Fault("base", f"{scope}/{key}: the base row (offset {last}) is not a key as of the "
                                   f"floor - 1 ({floor.earliest - 1})", last))


def _same_json(a: str | None, b: str | None) -> bool:
    """Equal stored JSON: the writer copies text, so compare text first and decode only on a difference."""
    if a == b:
        return True
    if a is None or b is None:
        return False
    try:
        return bool(_decode(a) == _decode(b))
    except msgspec.DecodeError:
        return False


def _check_chain_and_state(conn: sqlite3.Connection, report: VerifyReport, progress: Progress | None) -> None:
    """One pass over the state events in (scope, key, offset) order — the order of an index — checks each key's
    chain (old_value == the previous new_value, event types, versions) and folds it, starting from the key's base
    row when the log was compacted; the fold is merged with the state table, which is in the same order, so memory
    stays flat whatever the size of the file."""
    report.checked += ["chain", "state"]
    table = conn.execute("SELECT scope, key, value, version, last_seq, created_seq FROM state ORDER BY scope, key")
    row = next(table, None)
    base = conn.execute("SELECT scope, key, value, version, last_seq, created_seq FROM log_base ORDER BY scope, key")
    base_row = next(base, None)
    events = conn.execute("SELECT scope, key, seq, event_type, version, old_value, new_value FROM events "
                          "WHERE kind = 'state' ORDER BY scope, key, seq")
    current: tuple[str, str] | None = None
    folded: tuple[str | None, int, int, int] = (None, 0, 0, 0)  # value text, version, last seq, created seq
    n = 0

    def close_key(final: bool = False) -> None:
        """Compare the fold of ``current`` with its state row; rows before it (or all left, when final) are extra."""
        nonlocal row
        while row is not None and (final or (current is not None and (row[0], row[1]) < current)):
            _fault(report, "state", f"{row[0]}/{row[1]}: in the state table but not in the log", row[4])
            row = next(table, None)
        if current is None:
            return
        value, version, last, created = folded
        here = row is not None and (row[0], row[1]) == current
        if value is None and here:
            assert row is not None
            _fault(report, "state", f"{current[0]}/{current[1]}: in the state table but deleted in the log at "
                   f"offset {last}", last)
        elif value is not None and not here:
            _fault(report, "state", f"{current[0]}/{current[1]}: missing from the state table (last offset {last})",
                   last)
        elif value is not None and row is not None and (
            not _same_json(row[2], value) or (row[3], row[4], row[5]) != (version, last, created)
        ):
            _fault(report, "state", f"{current[0]}/{current[1]}: the state table holds {row[2][:80]} (version "
                   f"{row[3]}, offset {row[4]}) but the log says {value[:80]} (version {version}, offset {last})",
                   last)
        if here:
            row = next(table, None)

    def start_key(k: tuple[str, str] | None) -> tuple[str | None, int, int, int]:
        """Close the base-only keys before ``k`` (compacted keys with no event since); ``k``'s base fold, if any."""
        nonlocal base_row, current, folded
        while base_row is not None and (k is None or (base_row[0], base_row[1]) < k):
            current, folded = (base_row[0], base_row[1]), tuple(base_row[2:])
            close_key()
            base_row = next(base, None)
        if k is not None and base_row is not None and (base_row[0], base_row[1]) == k:
            found: tuple[str | None, int, int, int] = tuple(base_row[2:])
            base_row = next(base, None)
            return found
        return None, 0, 0, 0

    for scope, key, seq, event_type, version, old_text, new_text in events:
        if (scope, key) != current:
            close_key()
            current = None
            folded = start_key((scope, key))
            current = (scope, key)
        prev_text, prev_version, prev_seq, created = folded
        fault = _chain_fault(seq, event_type, version, old_text, new_text, prev_text, prev_version, prev_seq)
        if fault is not None:
            _fault(report, "chain", f"{scope}/{key}: {fault}", seq)
        created = seq if event_type == "created" else created
        folded = (new_text, version, seq, created)
        n += 1
        if progress is not None and n % 10_000 == 0:
            progress(10_000)
    close_key()
    current = None
    start_key(None)
    current = None
    close_key(final=True)


def _fault(report: VerifyReport, check: str, message: str, offset: int | None) -> None:
    if len(report.faults) <= MAX_FAULTS:
        report.faults.append(Fault(check, message, offset))


def _chain_fault(seq: int, event_type: str, version: int, old_text: str | None, new_text: str | None,
                 prev_text: str | None, prev_version: int, prev_seq: int) -> str | None:
    """What is wrong with one event given the key's previous new_value (as stored JSON text), or None."""
    if not _same_json(old_text, prev_text):
        try:
            for text in (old_text, new_text):
                if text is not None:
                    _decode(text)
        except msgspec.DecodeError as exc:
            return f"offset {seq} holds invalid JSON ({exc})"
        where = f"offset {prev_seq}" if prev_seq else "nothing (the key did not exist)"
        return f"offset {seq}: old_value does not equal the new_value of {where}"
    exists = prev_text is not None
    expected = {"created": (not exists, 1), "updated": (exists, prev_version + 1), "deleted": (exists, 0)}
    if event_type not in expected:
        return f"offset {seq}: unknown event_type {event_type!r}"
    allowed, want_version = expected[event_type]
    if not allowed:
        return f"offset {seq}: {event_type} does not follow from the key's previous state"
    if version != want_version:
        return f"offset {seq}: version {version}, expected {want_version}"
    if (new_text is None) != (event_type == "deleted"):
        return f"offset {seq}: new_value is {'missing' if new_text is None else 'present'} on a {event_type} event"
    return None


# ---- tokens ----------------------------------------------------------------------------------------------------


def open_for_tokens(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """A write connection for ``ripple token …``, usable beside a live server (tokens are not part of the log, so
    they need no writer lock). A missing or older file is first created or migrated, which does take the lock."""
    if is_postgres_url(path):  # tokens live in PostgreSQL too, beside the log every node serves
        pg: Any = postgres.connect(str(path))
        postgres.migrate(pg, str(path))
        return pg  # type: ignore[no-any-return]
    version = inspect_file(path)
    if version != LATEST_VERSION:
        with writing(path, new_file=version is None):
            pass
    conn = sqlite3.connect(uri(path, "rw"), uri=True, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=10000")  # a live server's group commit holds the write lock for milliseconds
    return conn


# ---- import ----------------------------------------------------------------------------------------------------


def count_lines(stream: IO[bytes]) -> int | None:
    """The lines of a seekable input (a file, or stdin redirected from one), read ahead and rewound; ``None`` for
    a pipe. Used only to size a progress bar."""
    try:
        if not stream.seekable():
            return None
        start = stream.tell()
    except (OSError, ValueError):
        return None
    n, last = 0, b"\n"
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        n += chunk.count(b"\n")
        last = chunk[-1:]
    stream.seek(start)
    return n + (last != b"\n")


class ImportError_(ValidationError):
    code = "import_error"


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], *, new_file: bool) -> Iterator[sqlite3.Connection]:
    """The writer lock and a migrated write connection. When ``new_file``, a failure removes the file again, and
    the lock file goes at the end (nobody else knows this file, so removing it cannot race another writer)."""
    lock = WriterLock(path)
    lock.acquire()
    conn: sqlite3.Connection | None = None
    try:
        conn = connect_writer(path, "full")
        migrate(conn, str(path))
        yield conn
    except BaseException:
        if conn is not None:
            conn.close()
            conn = None
        if new_file:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{os.fspath(path)}{suffix}").unlink(missing_ok=True)
        raise
    finally:
        if conn is not None:
            conn.close()
        lock.release()
        if new_file:
            Path(f"{os.fspath(path)}.lock").unlink(missing_ok=True)


def import_events(path: str | os.PathLike[str], lines: IO[bytes], *, append: bool = False,
                  progress: Progress | None = None,
                  after_import: Callable[[sqlite3.Connection], None] | None = None) -> int:
    """Import JSON lines into ``path`` all-or-nothing; returns the number of events. Takes the writer lock."""
    existed = Path(path).exists() and Path(path).stat().st_size > 0
    inspect_file(path)
    with writing(path, new_file=not existed) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            n = _import_into(conn, lines, append, progress)
            if after_import is not None:
                after_import(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return n


class _KeyFold(msgspec.Struct):
    """A key's state while importing: stored JSON text (None = absent), version, last and created offsets."""

    text: str | None
    version: int
    last_seq: int
    created_seq: int


_STATE_TRANSITIONS = {("set", "created"), ("set", "updated"), ("update", "created"), ("update", "updated"),
                      ("delete", "deleted")}


class _Import:
    """The running state of one import: the floor a prefix set, and the next offset expected."""

    def __init__(self, head: int) -> None:
        self.head = head
        self.floor: FloorRecord | None = None
        self.expected = head + 1
        self.events = 0

    def next_offset(self, offset: int) -> int:
        """The offset this event must have: the next one, except that below the stream floor removed stream events
        leave gaps."""
        floor = self.floor
        if floor is not None and self.expected < floor.stream_earliest and self.expected < offset <= \
                floor.stream_earliest:
            self.expected = offset
        return self.expected

    def prefix(self, conn: sqlite3.Connection, line: PrefixLine, keys: dict[tuple[str, str], _KeyFold]) -> None:
        """A floor or base line of a compacted export: only at the start, into an empty database."""
        if self.events or self.head:
            raise ValidationError("floor and base lines come first, and only into an empty database")
        if line.floor is not None:
            f = line.floor
            if self.floor is not None or line.base is not None:
                raise ValidationError("one floor line, before the base lines")
            if f.earliest < 1 or f.stream_earliest < f.earliest:
                raise ValidationError(f"invalid floor {f.earliest}/{f.stream_earliest}")
            self.floor = f
            self.expected = f.earliest
            conn.execute("INSERT INTO log_floor (id, earliest, stream_earliest, compacted_ts) VALUES (1, ?, ?, ?)",
                         (f.earliest, f.stream_earliest, int(time.time() * 1000)))
            return
        b = line.base
        if b is None or self.floor is None:
            raise ValidationError("a base line needs the floor line before it")
        validate_scope(b.scope)
        validate_key(b.key)
        if b.value is None or not 0 < b.created <= b.offset < self.floor.earliest or b.version < 1:
            raise ValidationError(f"{b.scope}/{b.key}: not a key as of the floor - 1 ({self.floor.earliest - 1})")
        if (b.scope, b.key) in keys:
            raise ValidationError(f"{b.scope}/{b.key}: two base lines")
        text = _encode(b.value).decode()
        conn.execute("INSERT INTO log_base (scope, key, value, version, last_seq, created_seq, ts) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)", (b.scope, b.key, text, b.version, b.offset, b.created, b.ts))
        keys[(b.scope, b.key)] = _KeyFold(text, b.version, b.offset, b.created)


_decode_prefix = msgspec.json.Decoder(PrefixLine).decode


def _import_into(conn: sqlite3.Connection, lines: IO[bytes], append: bool, progress: Progress | None) -> int:
    head = sql.head(conn)
    if head and not append:
        raise ImportError_(f"the database is not empty (head {head}); use --append to continue its offsets")
    state = _Import(head)
    keys: dict[tuple[str, str], _KeyFold] = {}
    names: set[tuple[str, str]] = set()
    # A bulk load builds the events indexes faster once, sorted, at the end (same DDL, read back from the file).
    indexes = [ddl for _name, ddl in conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL")]
    for name, in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'events' AND sql IS NOT NULL"
    ).fetchall():
        conn.execute(f'DROP INDEX "{name}"')
    insert = sql.INSERT_EVENT
    batch: list[tuple[Any, ...]] = []
    n = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            try:
                event = _decode_import(line)
            except msgspec.ValidationError:
                prefix = _maybe_prefix(line)
                if prefix is None:
                    raise
                state.prefix(conn, prefix, keys)
                continue
            row = _imported_row(conn if head else None, event, state.next_offset(event.offset), keys, names)
        except (msgspec.DecodeError, msgspec.ValidationError, RippleError, RecursionError) as exc:
            message = exc.message if isinstance(exc, RippleError) else str(exc)
            if isinstance(exc, RecursionError):
                message = f"a value nests arrays and objects deeper than {MAX_DEPTH} levels"
            raise ImportError_(f"line {number}: {message}", detail={"line": number}) from None
        batch.append(row)
        n += 1
        state.expected += 1
        state.events = n
        if len(batch) >= PAGE:
            conn.executemany(insert, batch)
            batch.clear()
            if progress is not None:
                progress(PAGE)
    conn.executemany(insert, batch)
    if progress is not None and batch:
        progress(len(batch))
    for ddl in indexes:
        conn.execute(ddl)
    _write_state(conn, keys)
    return n


def _maybe_prefix(line: bytes) -> PrefixLine | None:
    try:
        prefix = _decode_prefix(line)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return prefix if prefix.floor is not None or prefix.base is not None else None


def _imported_row(conn: sqlite3.Connection | None, e: ImportedEvent, expected_offset: int,
                  keys: dict[tuple[str, str], _KeyFold], names: set[tuple[str, str]]) -> tuple[Any, ...]:
    """Validate one imported event against the log so far and return its row. ``conn`` reads the current state of
    a key the import has not seen yet (``None``: the log was empty, and so is the state)."""
    if e.offset != expected_offset:
        raise ValidationError(f"offset {e.offset} does not continue the log (expected {expected_offset})")
    new_raw = None if e.new_value is None and e.kind == "state" else _encode(e.new_value)
    old_raw = None if e.old_value is None else _encode(e.old_value)
    for raw, value, what in ((new_raw, e.new_value, "new_value"), (old_raw, e.old_value, "old_value")):
        if raw is not None:
            check_raw_depth(raw, value, what)  # the same nesting limit as every other entrance
    new_text = None if new_raw is None else new_raw.decode()
    old_text = None if old_raw is None else old_raw.decode()
    row = (e.offset, e.ts, e.kind, e.scope, e.key, e.op, e.event_type, e.version, old_text, new_text,
           _encode(e.meta).decode())
    k = (e.scope, e.key)
    if k not in names:
        if e.kind == "stream":
            validate_name("stream", e.scope, 256, allow_slash=False)
            validate_name("group", e.key, 1024, allow_slash=True)
        else:
            validate_scope(e.scope)
            validate_key(e.key)
        names.add(k)
    if e.kind == "stream":
        if e.op != "send" or e.old_value is not None or e.version != 0:
            raise ValidationError("a stream event has op 'send', no old_value and version 0")
        return row
    if (e.op, e.event_type) not in _STATE_TRANSITIONS:
        raise ValidationError(f"op {e.op!r} cannot give a {e.event_type!r} event")
    fold = keys.get(k)
    if fold is None:
        found = None if conn is None else conn.execute(sql.SELECT_KEY, k).fetchone()
        fold = _KeyFold(None, 0, 0, 0) if found is None else _KeyFold(*found)
        keys[k] = fold
    fault = _chain_fault(e.offset, e.event_type, e.version, old_text, new_text, fold.text, fold.version,
                         fold.last_seq)
    if fault is not None:
        raise ValidationError(fault)
    fold.created_seq = e.offset if e.event_type == "created" else fold.created_seq
    fold.text, fold.version, fold.last_seq = new_text, e.version, e.offset
    return row


def _write_state(conn: sqlite3.Connection, keys: dict[tuple[str, str], _KeyFold]) -> None:
    conn.executemany(sql.DELETE_STATE, [k for k, f in keys.items() if f.text is None])
    conn.executemany(
        sql.UPSERT_STATE,
        [(k[0], k[1], f.text, f.version, f.last_seq, f.created_seq) for k, f in keys.items() if f.text is not None],
    )


def _rebuild_state_table(conn: sqlite3.Connection) -> None:
    conn.execute("DELETE FROM state")
    conn.execute("INSERT INTO state (scope, key, value, version, last_seq, created_seq) "
                 f"SELECT scope, key, value, version, last_seq, created FROM ({STATE_AT})", (sql.head(conn),))


# ---- replay ----------------------------------------------------------------------------------------------------


REPLAY_PAGE = 50_000


def replay(source: str | os.PathLike[str], to: int, into: str | os.PathLike[str],
           after_copy: Callable[[sqlite3.Connection], None] | None = None, progress: Progress | None = None) -> int:
    """Write a new database ``into`` holding the events of ``source`` up to offset ``to``; returns its head.

    The events are copied in pages of offsets (one transaction still) so that ``progress`` can follow."""
    if Path(into).exists():
        raise DatabaseFileError(f"{into} already exists; replay writes only a new file")
    src = open_readonly(source)
    try:
        check_at(src, to, "--to")
    finally:
        src.close()
    with writing(into, new_file=True) as conn:
        conn.execute("ATTACH DATABASE ? AS src", (f"file:{Path(source).absolute()}?mode=ro",))
        conn.execute("BEGIN IMMEDIATE")  # one read snapshot of the source: its events, base and floor agree
        try:
            for low in range(0, to, REPLAY_PAGE):
                high = min(low + REPLAY_PAGE, to)
                conn.execute(f"INSERT INTO main.events ({EVENT_COLUMNS}) SELECT {EVENT_COLUMNS} FROM src.events "
                             "WHERE seq > ? AND seq <= ?", (low, high))
                if progress is not None:
                    progress(high - low)
            conn.execute("INSERT INTO main.log_base SELECT * FROM src.log_base")
            conn.execute("INSERT INTO main.log_floor (id, earliest, stream_earliest, compacted_ts) "
                         "SELECT id, earliest, min(stream_earliest, ? + 1), compacted_ts FROM src.log_floor", (to,))
            earliest = int(conn.execute("SELECT coalesce(max(earliest), 1) FROM src.log_floor").fetchone()[0])
            if to < earliest - 1:  # a live server compacted the source since the check above
                raise OffsetOutOfRangeError(f"--to {to} is older than the earliest offset kept ({earliest})",
                                            detail={"to": to, "earliest": earliest})
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        # Detach before anything else runs: an unqualified DROP TABLE would otherwise reach the source's tables.
        conn.execute("DETACH DATABASE src")
        conn.execute("BEGIN IMMEDIATE")
        _rebuild_state_table(conn)
        if after_copy is not None:
            after_copy(conn)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return sql.head(conn)


# ---- projections ---------------------------------------------------------------------------------------------


def load_projections(db: str | os.PathLike[str], app: str | None) -> list[Any]:
    """The built-in projections plus those ``setup(store)`` of ``app`` registers; no reaction ever runs offline."""
    from ripple.store.store import Store
    from ripple.userapp import apply_setup

    store = Store(db, run_reactions=False)  # never opened: registering touches no file
    if app is not None:
        apply_setup(store, app, reactions=False)
    return list(store.projections)


def projection_faults(projections: Sequence[Any]) -> list[Callable[[sqlite3.Connection, int], list[Fault]]]:
    """One verify check per projection: its live tables against a fresh fold into TEMP tables."""
    from ripple.projections.runner import compare_projection

    def check_one(projection: Any) -> Callable[[sqlite3.Connection, int], list[Fault]]:
        def check(conn: sqlite3.Connection, head: int) -> list[Fault]:
            diffs = compare_projection(conn, projection)
            # a projection the file never built is not a fault: it is built when a store next opens the file; one
            # that holds compacted history cannot be compared (a note, not a fault)
            return [Fault(NOTE if d.kind == "compacted" else f"projection {projection.name}", d.message, d.offset)
                    for d in diffs if d.kind != "not_built"]
        return check

    return [check_one(p) for p in projections]


def rebuild_all(conn: sqlite3.Connection, projections: Sequence[Any], progress: Progress | None = None) -> list[str]:
    from ripple.projections.runner import rebuild_offline

    last = 0

    def advance(done: int, _head: int) -> None:
        nonlocal last
        if progress is not None:
            progress(done - last)
        last = done

    rows = rebuild_offline(conn, list(projections), advance)
    return [row.name for row in rows]


def rebuild_projections(db: str | os.PathLike[str], name: str | None, app: str | None,
                        progress: Progress | None = None) -> list[str]:
    """Rebuild one projection (or all) in the file, under the writer lock."""
    if inspect_file(db) is None:
        raise DatabaseFileError(f"{db}: no such ripple database")
    projections = load_projections(db, app)
    if name is not None:
        chosen = [p for p in projections if p.name == name]
        if not chosen:
            known = ", ".join(sorted(p.name for p in projections))
            raise ValidationError(f"no projection named {name!r} (known: {known}; pass --app for your own)")
        projections = chosen
    lock = WriterLock(db)
    lock.acquire()
    try:
        conn = connect_writer(db, "full")
        try:
            return rebuild_all(conn, projections, progress)
        finally:
            conn.close()
    finally:
        lock.release()


def unregistered_projections(conn: sqlite3.Connection, registered: Sequence[Any]) -> list[str]:
    """Names of the projections the file records that none of ``registered`` is (a user's, without ``--app``)."""
    from ripple.projections.runner import load_rows

    known = {p.name for p in registered}
    return [row.name for row in load_rows(conn) if row.name not in known]


# ---- stats -----------------------------------------------------------------------------------------------------


def projection_list(conn: sqlite3.Connection, registered: Sequence[Any] | None = None) -> Any:
    """The projections the file records (and ``registered`` ones it does not yet: ``not_built``), with their lag."""
    from ripple.projections.builtin import metrics_projection
    from ripple.projections.runner import list_projections

    return list_projections(conn, registered if registered is not None else [metrics_projection()], recorded=True)


def stats(conn: sqlite3.Connection, path: str | os.PathLike[str]) -> dict[str, Any]:
    conn.execute("BEGIN")
    try:
        per_scope: dict[str, dict[str, int]] = {}
        for kind, scope, op, n in conn.execute(
            "SELECT kind, scope, op, count(*) FROM events GROUP BY kind, scope, op ORDER BY kind, scope, op"
        ):
            per_scope.setdefault(f"{kind}:{scope}", {})[op] = n
        projections = projection_list(conn).projections
        reactions = [{"name": n, "cursor": c} for n, c in conn.execute("SELECT name, cursor FROM reactions")]
        head = sql.head(conn)
        floor = retention.read_floor(conn)
        keys = conn.execute("SELECT count(*) FROM state").fetchone()[0]
        base_keys = conn.execute("SELECT count(*) FROM log_base").fetchone()[0]
        stored = sum(n for ops in per_scope.values() for n in ops.values())
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        free = retention.free_pages(conn) * page_size
        vacuum = retention.auto_vacuum(conn)
    finally:
        conn.execute("COMMIT")
    p = Path(path)
    wal = Path(f"{os.fspath(path)}-wal")
    file_bytes = p.stat().st_size
    return {
        "file": str(p.absolute()),
        "file_bytes": file_bytes,
        "wal_bytes": wal.stat().st_size if wal.exists() else 0,
        "free_bytes": free,
        # the file's bytes in use over the events it holds: what a --retain-size budget divides by
        "bytes_per_event": round((file_bytes - free) / stored, 1) if stored else None,
        "auto_vacuum": vacuum,
        "schema_version": version,
        "supported_schema_version": LATEST_VERSION,
        "head": head,
        "earliest": floor.earliest,
        "stream_earliest": floor.stream_earliest,
        "stored_events": stored,
        "base_keys": base_keys,
        "keys": keys,
        "events": per_scope,
        "projections": projections,
        "reactions": reactions,
    }
