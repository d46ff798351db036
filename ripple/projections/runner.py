"""Folding projections into SQL tables: synchronous, on a plain ``sqlite3`` connection (DESIGN §6).

These functions are shared by the live store (inline folds in the writer's transaction, async catch-up, rebuild and
swap) and by the offline tool (``ripple verify/rebuild/replay``), which has no server and no event loop.

Connections must be in autocommit mode (``isolation_level=None``). Functions that need a transaction open one unless
the connection is already inside one, in which case they run in the caller's.

- :func:`table_names` — the physical tables of a generation; :func:`create_tables`, :func:`drop_generations`.
- :func:`fold_events` (pure) and :func:`execute_folded` — events → statements → SQL, a SAVEPOINT around the work so
  a failing fold rolls back alone and everything before it is kept.
- :func:`fold_into` — fold an iterable of events into given tables.
- :func:`rebuild_offline` — fold the whole log into a new generation and swap it in, in one write transaction.
- :func:`compare_projection` — fold into TEMP tables up to the live checkpoint and list the rows that differ.
- :func:`read_state` — a projection's :class:`ProjectionState` in one read transaction.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import msgspec

from ripple.core.events import Event, KindFilter
from ripple.core.filter import Filter
from ripple.errors import ProjectionRebuildingError
from ripple.projections.base import Projection, ProjectionState, Statement, Status, Tables, default_read
from ripple.store import sql
from ripple.store.sqlite import rows_to_events

log = logging.getLogger("ripple.projections")

PAGE = 2000
Progress = Callable[[int, int], None]


class ProjectionRow(msgspec.Struct, frozen=True):
    """A row of the ``projections`` table."""

    name: str
    version: int
    checkpoint: int
    status: Status
    error: str | None
    generation: int
    failed_at: int | None


class FoldFailure(msgspec.Struct, frozen=True):
    """The event whose fold (or whose statements) raised; everything before it was applied."""

    offset: int
    error: str


class Folded(msgspec.Struct):
    """The statements of consecutive events (each tagged with its offset), up to a failing fold if any.

    From a projection's ``fold_many`` there is one batch, tagged with the last event's offset, and ``one_by_one``
    folds the same events with ``fold`` (to find which event's statements fail).
    """

    batches: list[tuple[int, list[Statement]]]
    failure: FoldFailure | None = None
    one_by_one: Callable[[], Folded] | None = None


class FoldResult(msgspec.Struct, frozen=True):
    """What :func:`fold_into` did: events seen, the last offset folded, and the failure that stopped it."""

    events: int
    checkpoint: int
    failure: FoldFailure | None = None


class Difference(msgspec.Struct, frozen=True):
    """One disagreement between a projection's live tables and a fresh fold (see :func:`compare_projection`).

    ``kind``: ``missing`` (a fresh fold has the row, the live table does not), ``unexpected`` (the reverse),
    ``fold_failed`` (a fresh fold raised at ``offset`` although the projection is not failed there),
    ``status`` (the live projection is failed but a fresh fold is not, or not at the same offset),
    ``not_built`` (no row in ``projections``), ``version_mismatch`` (the live tables hold another version) or
    ``compacted`` (the projection folded events that were compacted since: no fresh fold can reproduce it).
    """

    projection: str
    kind: Literal["missing", "unexpected", "fold_failed", "status", "not_built", "version_mismatch", "compacted"]
    message: str
    table: str | None = None
    row: list[Any] | None = None
    offset: int | None = None


# ---- names and tables -------------------------------------------------------------------------------------------


def table_names(projection: Projection, generation: int) -> dict[str, str]:
    """Physical table names of one generation: ``proj_<name>__<generation>__<table>``."""
    return {t: f"proj_{projection.name}__{generation}__{t}" for t in projection.tables}


def temp_table_names(projection: Projection) -> dict[str, str]:
    return {t: f"verify_{projection.name}__{t}" for t in projection.tables}


_CREATE_TABLE = re.compile(r"^\s*CREATE\s+TABLE\b", re.IGNORECASE)


def create_tables(conn: sqlite3.Connection, projection: Projection, tables: Tables, *, temp: bool = False) -> None:
    """Run the projection's schema for ``tables`` (``temp``: as TEMP tables; a read-only connection may create them)."""
    for stmt in projection.schema:
        sql = stmt.format_map(tables)
        if temp:
            sql = _CREATE_TABLE.sub("CREATE TEMP TABLE", sql, count=1)
        conn.execute(sql)


def drop_tables(conn: sqlite3.Connection, tables: Tables) -> None:
    for physical in tables.values():
        conn.execute(f'DROP TABLE IF EXISTS "{physical}"')


def drop_generations(conn: sqlite3.Connection, name: str, *, keep: int | None = None) -> None:
    """Drop every table of projection ``name`` except those of generation ``keep``."""
    prefix = f"proj_{name}__"
    keep_prefix = None if keep is None else f"{prefix}{keep}__"
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ?", (len(prefix), prefix)
    ).fetchall()
    for (table,) in rows:
        if keep_prefix is None or not table.startswith(keep_prefix):
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')


# ---- the projections table --------------------------------------------------------------------------------------

_ROWS = "SELECT name, version, checkpoint, status, error, generation, failed_at FROM projections"
_ROW = f"{_ROWS} WHERE name = ?"


def load_row(conn: sqlite3.Connection, name: str) -> ProjectionRow | None:
    row = conn.execute(_ROW, (name,)).fetchone()
    return None if row is None else ProjectionRow(*row)


def load_rows(conn: sqlite3.Connection) -> list[ProjectionRow]:
    return [ProjectionRow(*row) for row in conn.execute(f"{_ROWS} ORDER BY name")]


class ProjectionSummary(msgspec.Struct, frozen=True, omit_defaults=True):
    """One projection in a listing: where it is (``checkpoint``) and how far behind the log (``lag`` = head -
    checkpoint); ``error`` only for a failed one. ``status`` is ``not_built`` for a projection the loaded code
    registers but the file does not record yet (the offline tool; a store builds it on open)."""

    name: str
    version: int
    status: str
    checkpoint: int
    lag: int
    error: str | None = None


class ProjectionList(msgspec.Struct, frozen=True):
    """``GET /v1/projections`` and ``ripple projections``: the head and the projections, by name."""

    head: int
    projections: list[ProjectionSummary]


def list_projections(
    conn: sqlite3.Connection, registered: Sequence[Projection], *, recorded: bool
) -> ProjectionList:
    """The head and the projections table from one read transaction, summarised.

    ``registered`` are the projections the running code knows; a registered one with no row yet is ``catching_up``
    (a live store is creating it) or, with ``recorded`` (the offline tool, which lists what the file records, rows
    of projections nobody registered included), ``not_built``.
    """
    with transaction(conn, write=False):
        head = sql.head(conn)
        rows = {row.name: row for row in load_rows(conn)}
    names = set(rows) | {p.name for p in registered} if recorded else {p.name for p in registered}
    versions = {p.name: p.version for p in registered}
    out = []
    for name in sorted(names):
        row = rows.get(name)
        if row is None:
            missing = "not_built" if recorded else "catching_up"
            out.append(ProjectionSummary(name, versions[name], missing, 0, head))
        else:
            out.append(ProjectionSummary(name, row.version, row.status, row.checkpoint, head - row.checkpoint,
                                         row.error))
    return ProjectionList(head, out)


def save_row(conn: sqlite3.Connection, row: ProjectionRow) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO projections (name, version, checkpoint, status, error, generation, failed_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (row.name, row.version, row.checkpoint, row.status, row.error, row.generation, row.failed_at),
    )


def set_progress(conn: sqlite3.Connection, name: str, checkpoint: int, status: Status = "ok") -> None:
    conn.execute(
        "UPDATE projections SET checkpoint = ?, status = ?, error = NULL, failed_at = NULL WHERE name = ?",
        (checkpoint, status, name),
    )


def set_folded_from(conn: sqlite3.Connection, name: str) -> None:
    """A rebuild folded the base at the current floor, then the log after it (the column ``folded_from``)."""
    conn.execute("UPDATE projections SET folded_from = ? WHERE name = ?", (sql.earliest(conn), name))


def set_failed(conn: sqlite3.Connection, name: str, failure: FoldFailure) -> None:
    conn.execute(
        "UPDATE projections SET checkpoint = ?, status = 'failed', error = ?, failed_at = ? WHERE name = ?",
        (failure.offset - 1, failure.error, failure.offset, name),
    )
    log.error("projection %s failed at offset %d: %s", name, failure.offset, failure.error,
              extra={"event": "projection_failure", "projection": name, "offset": failure.offset,
                     "error": failure.error})


# ---- folding ----------------------------------------------------------------------------------------------------


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def fold_events(projection: Projection, tables: Tables, events: Iterable[Event]) -> Folded:
    """Pure: the statements of every matching event, stopping at the first fold that raises.

    With ``fold_many``, one call for all the matching events; if it raises, ``fold`` one by one finds the event.
    """
    f = projection.filter
    kind = None if f.kind == "all" else f.kind
    scopes = f.scopes
    # Filter.matches, inlined: this runs once per event of a rebuild
    if kind is None and not scopes:
        matching = events if isinstance(events, list) else list(events)
    else:
        matching = [e for e in events if (kind is None or e.kind == kind) and (not scopes or e.scope in scopes)]
    fold_many = projection.fold_many
    if fold_many is None or not matching:
        return _fold_each(projection, tables, matching)
    try:
        stmts = list(fold_many(matching, tables))
    except Exception:
        return _fold_each(projection, tables, matching)
    return Folded([(matching[-1].offset, stmts)] if stmts else [],
                  one_by_one=lambda: _fold_each(projection, tables, matching))


def _fold_each(projection: Projection, tables: Tables, events: Sequence[Event]) -> Folded:
    batches: list[tuple[int, list[Statement]]] = []
    fold = projection.fold
    for event in events:
        try:
            stmts = fold(event, tables)
        except Exception as exc:
            return Folded(batches, FoldFailure(event.offset, describe(exc)))
        if stmts:
            batches.append((event.offset, stmts if isinstance(stmts, list) else list(stmts)))
    return Folded(batches)


def _run(conn: sqlite3.Connection, stmts: Iterable[Statement]) -> None:
    """Execute statements in order; runs of the same SQL text go through one ``executemany``."""
    sql: str | None = None
    params: list[Any] = []
    for s, p in stmts:
        if s != sql:
            if sql is not None:
                _flush(conn, sql, params)
            sql, params = s, []
        params.append(p)
    if sql is not None:
        _flush(conn, sql, params)


def _flush(conn: sqlite3.Connection, sql: str, params: list[Any]) -> None:
    if len(params) == 1:
        conn.execute(sql, params[0])
    else:
        conn.executemany(sql, params)


def execute_folded(conn: sqlite3.Connection, folded: Folded) -> FoldFailure | None:
    """Apply folded statements inside a SAVEPOINT; returns the first failure (its fold or its SQL), if any.

    The fast path runs everything at once. If a statement fails, the SAVEPOINT is rolled back and the events are
    replayed one by one, each in its own SAVEPOINT, so every event before the failing one is kept and it alone is not.
    A single statement (a group or page folded by ``fold_many`` into one upsert) needs no SAVEPOINT on SQLite, which
    undoes a failing statement by itself; PostgreSQL aborts the whole transaction instead, so there it keeps one.
    """
    batches = folded.batches
    if not batches:
        return folded.failure
    if len(batches) == 1 and len(batches[0][1]) == 1 and isinstance(conn, sqlite3.Connection):
        sql_text, params = batches[0][1][0]
        try:
            conn.execute(sql_text, params)
        except Exception as exc:
            if folded.one_by_one is None:
                return FoldFailure(batches[0][0], describe(exc))
            folded = folded.one_by_one()
            return _one_by_one(conn, folded.batches) or folded.failure
        return folded.failure
    conn.execute("SAVEPOINT fold")
    try:
        _run(conn, batches[0][1] if len(batches) == 1 else [s for _, stmts in batches for s in stmts])
    except Exception:
        conn.execute("ROLLBACK TO fold")
        if folded.one_by_one is not None:  # statements of fold_many: fold the events one by one to find the culprit
            folded = folded.one_by_one()
        failure = _one_by_one(conn, folded.batches)
        conn.execute("RELEASE fold")
        return failure or folded.failure
    conn.execute("RELEASE fold")
    return folded.failure


def _one_by_one(conn: sqlite3.Connection, batches: list[tuple[int, list[Statement]]]) -> FoldFailure | None:
    for offset, stmts in batches:
        conn.execute("SAVEPOINT fold_one")
        try:
            _run(conn, stmts)
        except Exception as exc:
            conn.execute("ROLLBACK TO fold_one")
            conn.execute("RELEASE fold_one")
            return FoldFailure(offset, describe(exc))
        conn.execute("RELEASE fold_one")
    return None


def apply_events(
    conn: sqlite3.Connection, projection: Projection, tables: Tables, events: Sequence[Event]
) -> FoldFailure | None:
    """Fold ``events`` and execute the statements; returns the failure that stopped it, if any."""
    return execute_folded(conn, fold_events(projection, tables, events))


def fold_into(
    conn: sqlite3.Connection, projection: Projection, tables: Tables, events: Iterable[Event], *, chunk: int = PAGE
) -> FoldResult:
    """Fold ``events`` (in offset order) into ``tables``; stops at the first failing fold.

    ``checkpoint`` is the last offset seen before the failure (or the last event's offset).
    """
    seen, checkpoint, buf = 0, 0, []
    for event in events:
        buf.append(event)
        if len(buf) >= chunk:
            failure = apply_events(conn, projection, tables, buf)
            if failure is not None:
                return FoldResult(seen + _count_before(buf, failure.offset), failure.offset - 1, failure)
            seen, checkpoint, buf = seen + len(buf), buf[-1].offset, []
    if buf:
        failure = apply_events(conn, projection, tables, buf)
        if failure is not None:
            return FoldResult(seen + _count_before(buf, failure.offset), failure.offset - 1, failure)
        seen, checkpoint = seen + len(buf), buf[-1].offset
    return FoldResult(seen, checkpoint)


def _count_before(events: Sequence[Event], offset: int) -> int:
    return sum(1 for e in events if e.offset < offset)


# ---- reading the log synchronously -------------------------------------------------------------------------------


def event_filter(projections: Sequence[Projection]) -> Filter:
    """The narrowest log filter that still returns every event one of ``projections`` folds."""
    kinds = {p.kind for p in projections}
    kind: KindFilter = kinds.pop() if len(kinds) == 1 else "all"
    if any(p.scopes is None for p in projections):
        return Filter.of(kind)
    return Filter.of(kind, {s for p in projections for s in (p.scopes or ())})


def read_page(conn: sqlite3.Connection, f: Filter, after: int, upto: int, limit: int = PAGE) -> list[Event]:
    """One page of the log (``ripple.store.sql.events_page``) as events, on a synchronous connection.

    A fold from the beginning of a compacted log starts with the base: below the floor, the page holds one synthetic
    ``created`` event per key alive at ``earliest - 1`` (its value, version and last offset then; ``op`` ``set``, no
    ``old_value``), in offset order, and then the events after the floor. So a rebuilt projection counts each of
    those keys as created once and none of the updates or deletes that were compacted (the built-in ``metrics``
    projection's ``creates``/``updates``/``deletes`` then cover what the log still holds).
    """
    with transaction(conn, write=False):
        rows: list[Any] = []
        earliest = sql.earliest(conn)
        if after < earliest - 1 and f.kind != "stream":
            query, params = sql.base_page(f, after, min(upto, earliest - 1), limit)
            rows = conn.execute(query, params).fetchall()
            after = earliest - 1
        if len(rows) < limit and after < upto:
            query, params = sql.events_page(f, after, upto, limit - len(rows))
            rows += conn.execute(query, params).fetchall()
    return rows_to_events(rows)


def iter_pages(
    conn: sqlite3.Connection, after: int, upto: int, f: Filter, *, page: int = PAGE
) -> Iterator[list[Event]]:
    """Pages of events in ``(after, upto]`` (run it inside a read transaction for a consistent view)."""
    while after < upto:
        events = read_page(conn, f, after, upto, page)
        if not events:
            return
        yield events
        if len(events) < page:
            return
        after = events[-1].offset


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection, *, write: bool) -> Iterator[None]:
    """``BEGIN`` … ``COMMIT`` unless the caller already holds a transaction on ``conn``."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# ---- offline: rebuild, compare, read ----------------------------------------------------------------------------


def rebuild_offline(
    conn: sqlite3.Connection,
    projections: Projection | Sequence[Projection],
    progress: Progress | None = None,
) -> list[ProjectionRow]:
    """Rebuild projections from offset 0 in one pass over the log and swap them in, in one write transaction.

    Each projection is folded into a new generation of its tables; the old generation is dropped at the end. Needs
    the writer lock (no live server). ``progress(done_offset, head)`` is called after every page. Returns the new
    rows of the ``projections`` table (status ``failed`` with ``failed_at`` if a fold raised).
    """
    todo = [projections] if isinstance(projections, Projection) else list(projections)
    with transaction(conn, write=True):
        head = sql.head(conn)
        targets: list[tuple[Projection, dict[str, str], int]] = []
        for p in todo:
            row = load_row(conn, p.name)
            generation = 0 if row is None else row.generation + 1
            tables = table_names(p, generation)
            drop_tables(conn, tables)
            create_tables(conn, p, tables)
            targets.append((p, tables, generation))
        failures: dict[str, FoldFailure] = {}
        for page in iter_pages(conn, 0, head, event_filter(todo)):
            for p, tables, _ in targets:
                if p.name not in failures:
                    failure = apply_events(conn, p, tables, page)
                    if failure is not None:
                        failures[p.name] = failure
            if progress is not None:
                progress(page[-1].offset, head)
        rows = []
        for p, _, generation in targets:
            failure = failures.get(p.name)
            new = ProjectionRow(
                p.name,
                p.version,
                head if failure is None else failure.offset - 1,
                "ok" if failure is None else "failed",
                None if failure is None else failure.error,
                generation,
                None if failure is None else failure.offset,
            )
            save_row(conn, new)
            set_folded_from(conn, p.name)
            drop_generations(conn, p.name, keep=generation)
            rows.append(new)
        if progress is not None:
            progress(head, head)
    return rows


def compare_projection(
    conn: sqlite3.Connection, projection: Projection, *, limit: int = 100, progress: Progress | None = None
) -> list[Difference]:
    """Fold the log into TEMP tables up to the projection's checkpoint and compare them with its live tables.

    Runs in one read transaction (a read-only connection is enough; TEMP tables live outside the file). Returns
    an empty list when they agree; otherwise up to ``limit`` differing rows per table and per direction.
    """
    with transaction(conn, write=False):
        row = load_row(conn, projection.name)
        if row is None:
            return [Difference(projection.name, "not_built", f"projection {projection.name} was never built")]
        if row.version != projection.version:
            return [
                Difference(
                    projection.name,
                    "version_mismatch",
                    f"projection {projection.name}: the file holds version {row.version}, the code is version "
                    f"{projection.version} (status {row.status}); rebuild it",
                )
            ]
        folded_from = int(conn.execute("SELECT folded_from FROM projections WHERE name = ?",
                                       (projection.name,)).fetchone()[0])
        earliest = sql.earliest(conn)
        if folded_from < earliest:
            return [
                Difference(
                    projection.name,
                    "compacted",
                    f"projection {projection.name} was folded from offset {folded_from} and the log now starts at "
                    f"{earliest}: it holds history that was compacted, so it is not compared (a rebuild starts it "
                    "from the base and makes it comparable)",
                )
            ]
        temp = temp_table_names(projection)
        drop_tables(conn, temp)
        create_tables(conn, projection, temp, temp=True)
        try:
            return _compare(conn, projection, row, temp, limit, progress)
        finally:
            drop_tables(conn, temp)


def _compare(
    conn: sqlite3.Connection,
    projection: Projection,
    row: ProjectionRow,
    temp: dict[str, str],
    limit: int,
    progress: Progress | None,
) -> list[Difference]:
    upto = row.checkpoint if row.failed_at is None else row.failed_at
    f = event_filter([projection])

    def events() -> Iterator[Event]:
        for page in iter_pages(conn, 0, upto, f):
            yield from page
            if progress is not None:
                progress(page[-1].offset, upto)

    result = fold_into(conn, projection, temp, events())
    out: list[Difference] = []
    fresh_failed = None if result.failure is None else result.failure.offset
    if fresh_failed != row.failed_at:
        if result.failure is not None and row.failed_at is None:
            out.append(
                Difference(
                    projection.name,
                    "fold_failed",
                    f"a fresh fold of {projection.name} fails at offset {result.failure.offset} "
                    f"({result.failure.error})",
                    offset=result.failure.offset,
                )
            )
        else:
            out.append(
                Difference(
                    projection.name,
                    "status",
                    f"{projection.name} is marked failed at offset {row.failed_at}, but a fresh fold "
                    + ("does not fail" if fresh_failed is None else f"fails at offset {fresh_failed}"),
                    offset=row.failed_at,
                )
            )
    live = table_names(projection, row.generation)
    for logical in projection.tables:
        pairs = (("missing", temp[logical], live[logical]), ("unexpected", live[logical], temp[logical]))
        for kind_name, a, b in pairs:
            rows = conn.execute(f'SELECT * FROM "{a}" EXCEPT SELECT * FROM "{b}" LIMIT ?', (limit,)).fetchall()
            for r in rows:
                out.append(
                    Difference(
                        projection.name,
                        kind_name,  # type: ignore[arg-type]
                        f"{projection.name}.{logical}: row {list(r)!r} is "
                        + ("missing from the live table" if kind_name == "missing" else "not in a fresh fold"),
                        table=logical,
                        row=list(r),
                    )
                )
    return out


def read_state(conn: sqlite3.Connection, projection: Projection) -> ProjectionState | None:
    """The projection's data and checkpoint from one read transaction; ``None`` if it was never built.

    Raises :class:`ProjectionRebuildingError` while its tables hold another version (a rebuild is pending).
    """
    with transaction(conn, write=False):
        row = load_row(conn, projection.name)
        if row is None:
            return None
        if row.status == "rebuilding" or row.version != projection.version:
            raise ProjectionRebuildingError(
                f"projection {projection.name} is being rebuilt (version {row.version} -> {projection.version}); "
                "retry later",
                detail={
                    "name": projection.name,
                    "version": projection.version,
                    "checkpoint": row.checkpoint,
                    "status": "rebuilding",
                },
            )
        read = projection.read or default_read
        data = read(conn, table_names(projection, row.generation))
    return ProjectionState(
        projection.name, projection.version, row.checkpoint, row.status, data, row.error, row.failed_at
    )
