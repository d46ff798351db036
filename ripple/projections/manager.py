"""Projections of a live store (``store.projections``): inline folds, async catch-up, rebuild-and-swap (DESIGN §6).

- **Inline**: a writer transaction hook folds each group's events into the projection's tables and advances its
  checkpoint before COMMIT, each projection in its own SAVEPOINT: exactly-once, and a failing fold rolls back alone
  (the projection is marked ``failed`` at that offset; writes and other projections go on).
- **Async**: a task follows the log from the checkpoint (a :class:`Follower`: live buffer, the log when behind), folds
  on the loop and sends the statements with the checkpoint advance through the writer queue (merged into group
  commits). An inline projection that is behind (new, or registered again after writes it missed) catches up the same
  way and hands over to the hook inside a writer transaction.
- **Rebuild**: fold the log from 0 into the next generation of tables (a worker thread reads and folds pages; the
  writer applies them as ordinary jobs, so writes go on), then one writer transaction folds the last events, drops the
  old generation and points the projection at the new one. A version change rebuilds on open; reads are refused
  (:class:`ProjectionRebuildingError`) until the new version is in place.

All state that matters lives in the ``projections`` row, read inside the writer's transaction, so a rolled-back
group can never leave the in-memory view and the tables disagreeing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from ripple.core.events import Event
from ripple.errors import NotFoundError, OffsetOutOfRangeError, RegistrationError, RippleError, StoreClosedError
from ripple.projections.base import Projection, ProjectionState, Status
from ripple.projections.runner import (
    PAGE,
    Folded,
    FoldFailure,
    ProjectionList,
    ProjectionRow,
    apply_events,
    create_tables,
    drop_generations,
    event_filter,
    execute_folded,
    fold_events,
    iter_pages,
    list_projections,
    load_row,
    read_page,
    read_state,
    save_row,
    set_failed,
    set_folded_from,
    set_progress,
    table_names,
)
from ripple.store import sql
from ripple.store.backend import connect_reader
from ripple.store.postgres import run_leased
from ripple.store.writer import WriteTxn
from ripple.subscriptions.cursor import Limits
from ripple.subscriptions.follower import Follower

if TYPE_CHECKING:
    from ripple.store.store import Store

log = logging.getLogger("ripple.projections")

REBUILD_PAGE = 5000
FINISH_GAP = 5000  # fold at most this many events inside the writer transaction that finishes a catch-up or a swap
FollowOutcome = Literal["ok", "stale", "failed", "handed_over"]


def _execute_all(txn: WriteTxn, folded: dict[str, Folded]) -> dict[str, FoldFailure]:
    """Apply each projection's statements of one rebuild page; returns the projections that failed."""
    failures = {}
    for name, f in folded.items():
        failure = execute_folded(txn.conn, f)
        if failure is not None:
            failures[name] = failure
    return failures


class ProjectionHandle:
    def __init__(self, projection: Projection) -> None:
        self.projection = projection
        self.ready = asyncio.Event()  # its row and tables exist
        self.changed = asyncio.Event()  # a rebuild swapped generations
        self.follower: asyncio.Task[None] | None = None
        self.rebuild: asyncio.Task[None] | None = None
        self._tables: dict[int, dict[str, str]] = {}

    def tables(self, generation: int) -> dict[str, str]:
        found = self._tables.get(generation)
        if found is None:
            found = self._tables[generation] = table_names(self.projection, generation)
        return found


class Projections:
    """The store's projection registry and runners."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._handles: dict[str, ProjectionHandle] = {}
        self._inline: tuple[ProjectionHandle, ...] = ()  # replaced, never mutated: the writer thread reads it
        self._started = False
        store.commits.add_txn_hook(self._inline_hook)

    def __iter__(self) -> Any:
        return iter([h.projection for h in self._handles.values()])

    def __contains__(self, name: object) -> bool:
        return name in self._handles

    def get(self, name: str) -> Projection:
        return self._handle(name).projection

    def _handle(self, name: str) -> ProjectionHandle:
        handle = self._handles.get(name)
        if handle is None:
            raise NotFoundError(f"no projection named {name!r}", detail={"name": name})
        return handle

    # -- registration and start

    def register(self, projection: Projection) -> Projection:
        if not isinstance(projection, Projection):
            raise RegistrationError(f"expected a Projection, not {type(projection).__name__}")
        if projection.name in self._handles:
            raise RegistrationError(
                f"a projection named {projection.name!r} is already registered", detail={"name": projection.name}
            )
        if self.store.closed:
            raise StoreClosedError("the store is closed")
        handle = ProjectionHandle(projection)
        self._handles[projection.name] = handle
        if projection.mode == "inline":
            self._inline = (*self._inline, handle)
        if self._started:
            # Queued now, so the tables exist before any write made after this call: an inline projection
            # registered on an open store folds those writes itself rather than catching up on them later.
            ensured = self.store.commits.run_in_txn(lambda txn: self._ensure(txn, handle))
            self.store.spawn(self._start_one(handle, ensured), name=f"ripple-projection-start:{projection.name}")
        return projection

    async def start(self) -> None:
        """On open: create missing tables and rows in one writer transaction, then start followers and rebuilds."""
        self._started = True
        handles = list(self._handles.values())
        if not handles:
            return
        rows = await self.store.commits.run_in_txn(lambda txn: [self._ensure(txn, h) for h in handles])
        for handle, row in zip(handles, rows, strict=True):
            self._launch(handle, row, rebuild=False)
        stale = [h for h, row in zip(handles, rows, strict=True) if row.status == "rebuilding"]
        if stale:  # version changes: one pass over the log rebuilds them all
            for h in stale:
                log.info("projection %s: new version %d, rebuilding", h.projection.name, h.projection.version)
            self._spawn_rebuild(stale)

    async def _start_one(self, handle: ProjectionHandle, ensured: asyncio.Future[ProjectionRow]) -> None:
        self._launch(handle, await ensured)

    def _ensure(self, txn: WriteTxn, handle: ProjectionHandle) -> ProjectionRow:
        p, conn = handle.projection, txn.conn
        row = load_row(conn, p.name)
        if row is None:
            drop_generations(conn, p.name)  # leftovers of a projection that was dropped by hand
            create_tables(conn, p, handle.tables(0))
            # on a compacted log a new projection starts from the base: that is a rebuild, not a catch-up
            status: Status = "ok" if txn.head == 0 else "rebuilding" if sql.earliest(conn) > 1 else "catching_up"
            row = ProjectionRow(p.name, p.version, 0, status, None, 0, None)
            save_row(conn, row)
        elif row.version != p.version:
            if row.status != "rebuilding":
                row = msgspec.structs.replace(row, status="rebuilding")
                conn.execute("UPDATE projections SET status = 'rebuilding' WHERE name = ?", (p.name,))
        elif row.status == "ok" and p.mode == "inline" and row.checkpoint < txn.head:
            # registered again after writes it did not see: catch up before the hook takes over
            row = msgspec.structs.replace(row, status="catching_up")
            conn.execute("UPDATE projections SET status = 'catching_up' WHERE name = ?", (p.name,))
        return row

    def _launch(self, handle: ProjectionHandle, row: ProjectionRow, *, rebuild: bool = True) -> None:
        handle.ready.set()
        if rebuild and row.status == "rebuilding":
            p = handle.projection
            log.info("projection %s: version %d -> %d, rebuilding", p.name, row.version, p.version)
            self._spawn_rebuild([handle])
        self._follow_later(handle)

    def _follow_later(self, handle: ProjectionHandle) -> None:
        if handle.follower is None or handle.follower.done():
            p = handle.projection
            label = f"ripple-projection:{p.name}"
            if self.store.shared_log and p.mode == "async":  # several nodes: one folds it at a time
                handle.follower = self.store.spawn(
                    run_leased(self.store.path, f"projection:{p.name}", functools.partial(self._follow, handle)),
                    name=label)
            else:
                handle.follower = self.store.spawn(self._follow(handle), name=label)

    # -- reading

    async def state(self, name: str) -> ProjectionState:
        """The projection's data, checkpoint and status (one read transaction on a read-only connection)."""
        handle = self._handle(name)
        if not self._started:
            raise StoreClosedError("the store is not open yet")
        await handle.ready.wait()
        p = handle.projection
        found = await asyncio.to_thread(self._read, p)
        if found is None:
            return ProjectionState(p.name, p.version, 0, "catching_up", None)
        return found

    async def summaries(self) -> ProjectionList:
        """Every registered projection's version, status, checkpoint and lag, without reading its data."""
        registered = [h.projection for h in self._handles.values()]
        return await asyncio.to_thread(self._list, registered)

    def _list(self, registered: list[Projection]) -> ProjectionList:
        conn = connect_reader(self.store.path)
        try:
            return list_projections(conn, registered, recorded=False)
        finally:
            conn.close()

    def _read(self, projection: Projection) -> ProjectionState | None:
        conn = connect_reader(self.store.path)
        try:
            return read_state(conn, projection)
        finally:
            conn.close()

    async def _row(self, name: str) -> ProjectionRow | None:
        # execute_fetchall: one hop that leaves no open statement behind if this task is cancelled meanwhile
        async with self.store.reader.connection() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT name, version, checkpoint, status, error, generation, failed_at FROM projections "
                    "WHERE name = ?",
                    (name,),
                )
            )
        return ProjectionRow(*rows[0]) if rows else None

    # -- inline: in the writer thread, inside the group's transaction

    def _inline_hook(self, txn: WriteTxn, events: list[Event]) -> None:
        for handle in self._inline:
            p = handle.projection
            try:
                row = load_row(txn.conn, p.name)
                if row is None or row.status != "ok" or row.version != p.version:
                    continue  # not built yet, catching up, rebuilding for a new version, or failed
                if row.checkpoint < events[0].offset - 1:
                    continue  # a gap: only a catch-up may fill it
                todo = [e for e in events if e.offset > row.checkpoint]
                if not todo:
                    continue
                failure = apply_events(txn.conn, p, handle.tables(row.generation), todo)
                if failure is None:
                    txn.conn.execute(
                        "UPDATE projections SET checkpoint = ? WHERE name = ?", (events[-1].offset, p.name)
                    )
                else:
                    set_failed(txn.conn, p.name, failure)
            except Exception:
                log.exception("inline projection %s: could not fold offsets %d-%d", p.name, events[0].offset,
                              events[-1].offset)

    # -- following the log: async projections, and inline ones that are behind

    async def _follow(self, handle: ProjectionHandle) -> None:
        p = handle.projection
        while True:
            handle.changed.clear()
            row = await self._row(p.name)
            if row is None or row.status in ("failed", "rebuilding") or row.version != p.version:
                await handle.changed.wait()
                continue
            if p.mode == "inline" and row.status == "ok":
                await handle.changed.wait()  # the hook folds it; a rebuild may hand it back
                continue
            await self._follow_generation(handle, row)

    async def _follow_generation(self, handle: ProjectionHandle, row: ProjectionRow) -> None:
        p = handle.projection
        tables = handle.tables(row.generation)
        def gap(error: RippleError) -> bool:
            log.error("projection %s: events after its checkpoint %d were compacted before it folded them; "
                      "rebuilding it from the base (%s)", p.name, row.checkpoint, error.message)
            if handle.rebuild is None or handle.rebuild.done():
                self._spawn_rebuild([handle])
            return False

        follower = Follower(
            self.store, p.filter, row.checkpoint, limits=Limits(max_buffer_bytes=None, page_size=PAGE),
            overflow_counter="projection_overflows", on_gap=gap,
        ).attach()
        checkpoint = row.checkpoint
        try:
            while True:
                batch = await follower.next(PAGE)
                position = follower.through
                folded = fold_events(p, tables, batch)
                outcome: FollowOutcome = await self.store.commits.run_in_txn(
                    functools.partial(self._apply, handle=handle, generation=row.generation, expected=checkpoint,
                                      folded=folded, position=position, live=follower.idle)
                )
                if outcome != "ok":
                    return
                checkpoint = position
        except StoreClosedError:
            return
        except OffsetOutOfRangeError:
            await handle.changed.wait()  # until the rebuild that gap() started swaps the new generation in
        finally:
            follower.detach()

    def _apply(
        self,
        txn: WriteTxn,
        handle: ProjectionHandle,
        generation: int,
        expected: int,
        folded: Folded,
        position: int,
        live: bool,
    ) -> FollowOutcome:
        p, conn = handle.projection, txn.conn
        row = load_row(conn, p.name)
        if (
            row is None
            or row.generation != generation
            or row.checkpoint != expected
            or row.version != p.version
            or row.status not in ("ok", "catching_up")
        ):
            return "stale"  # a rebuild swapped generations meanwhile: start again from the row
        failure = execute_folded(conn, folded)
        if failure is not None:
            set_failed(conn, p.name, failure)
            return "failed"
        if p.mode == "async":
            set_progress(conn, p.name, position, "ok" if live else "catching_up")
            return "ok"
        if txn.head - position > FINISH_GAP:
            set_progress(conn, p.name, position, "catching_up")
            return "ok"
        # Inline and nearly there: fold the rest here; from this transaction on, the hook folds every group.
        failure = self._fold_rest(conn, handle, handle.tables(generation), position, txn.head)
        if failure is not None:
            set_failed(conn, p.name, failure)
            return "failed"
        set_progress(conn, p.name, txn.head, "ok")
        return "handed_over"

    @staticmethod
    def _fold_rest(
        conn: Any, handle: ProjectionHandle, tables: dict[str, str], after: int, upto: int
    ) -> FoldFailure | None:
        for page in iter_pages(conn, after, upto, handle.projection.filter):
            failure = apply_events(conn, handle.projection, tables, page)
            if failure is not None:
                return failure
        return None

    # -- rebuild and swap

    async def rebuild(self, name: str) -> ProjectionState:
        """Rebuild ``name`` from offset 0 into new tables while writes go on, then swap; joins a running rebuild."""
        return (await self.rebuild_many([name]))[0]

    async def rebuild_many(self, names: Sequence[str]) -> list[ProjectionState]:
        """Rebuild several projections in one pass over the log (one read and decode of each event for all)."""
        handles = [self._handle(n) for n in names]
        if not self._started or self.store.closed:
            raise StoreClosedError("the store is not open")
        for handle in handles:
            await handle.ready.wait()
        todo = [h for h in handles if h.rebuild is None or h.rebuild.done()]
        if todo:
            self._spawn_rebuild(todo)
        await asyncio.gather(*(asyncio.shield(h.rebuild) for h in handles if h.rebuild is not None))
        return [await self.state(h.projection.name) for h in handles]

    def _spawn_rebuild(self, handles: list[ProjectionHandle]) -> None:
        label = ",".join(h.projection.name for h in handles)
        task = self.store.spawn(self._rebuild(handles), name=f"ripple-projection-rebuild:{label}")
        for handle in handles:
            handle.rebuild = task

    async def _rebuild(self, handles: list[ProjectionHandle]) -> None:
        # No compaction while a rebuild folds the base and then the events after it (Store.maintenance).
        async with self.store.maintenance:
            await self._rebuild_locked(handles)

    async def _rebuild_locked(self, handles: list[ProjectionHandle]) -> None:
        writer = self.store.commits

        def prepare(txn: WriteTxn) -> list[int]:
            generations = []
            for handle in handles:
                p = handle.projection
                row = load_row(txn.conn, p.name)
                generation = 0 if row is None else row.generation + 1
                drop_generations(txn.conn, p.name, keep=None if row is None else row.generation)
                create_tables(txn.conn, p, handle.tables(generation))
                generations.append(generation)
            return generations

        generations = await writer.run_in_txn(prepare)
        targets = [(h.projection, h.tables(g)) for h, g in zip(handles, generations, strict=True)]
        failures: dict[str, FoldFailure] = {}
        position = 0
        conn = connect_reader(self.store.path)  # one read connection for every page, used by one thread at a time

        def read_fold(after: int) -> asyncio.Future[tuple[dict[str, Folded], int]]:
            head = self.store.head
            return asyncio.ensure_future(asyncio.to_thread(self._read_fold, conn, targets, after, head, failures))

        pending = read_fold(position)
        try:
            while True:
                folded, position = await pending
                # read and fold the next page while the writer applies this one
                if self.store.head - position > FINISH_GAP:
                    pending = read_fold(position)
                found = await writer.run_in_txn(functools.partial(_execute_all, folded=folded))
                failures.update({name: f for name, f in found.items() if name not in failures})
                if self.store.head - position <= FINISH_GAP or len(failures) == len(targets):
                    break
        finally:
            if not pending.done():
                pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)  # the thread may still be reading: let it finish
            conn.close()
        await writer.run_in_txn(lambda txn: self._swap(txn, handles, generations, position, failures))
        for handle in handles:
            handle.changed.set()
            self._follow_later(handle)
            p = handle.projection
            log.info("projection %s rebuilt (version %d)", p.name, p.version)

    @staticmethod
    def _read_fold(
        conn: sqlite3.Connection,
        targets: list[tuple[Projection, dict[str, str]]],
        after: int,
        upto: int,
        failures: dict[str, FoldFailure],
    ) -> tuple[dict[str, Folded], int]:
        """In a worker thread: one page of the log in (after, upto], folded for each target, and the page's end."""
        events = read_page(conn, event_filter([p for p, _ in targets]), after, upto, REBUILD_PAGE)
        end = events[-1].offset if len(events) == REBUILD_PAGE else upto
        folded = {p.name: fold_events(p, tables, events) for p, tables in targets if p.name not in failures}
        return folded, end

    def _swap(
        self,
        txn: WriteTxn,
        handles: list[ProjectionHandle],
        generations: list[int],
        position: int,
        failures: dict[str, FoldFailure],
    ) -> None:
        """Fold the last events into the new generations, drop the old ones, point the rows at the new ones."""
        conn = txn.conn
        for handle, generation in zip(handles, generations, strict=True):
            p = handle.projection
            failure = failures.get(p.name)
            if failure is None:
                failure = self._fold_rest(conn, handle, handle.tables(generation), position, txn.head)
            drop_generations(conn, p.name, keep=generation)
            set_folded_from(conn, p.name)
            save_row(
                conn,
                ProjectionRow(
                    p.name,
                    p.version,
                    txn.head if failure is None else failure.offset - 1,
                    "ok" if failure is None else "failed",
                    None if failure is None else failure.error,
                    generation,
                    None if failure is None else failure.offset,
                ),
            )
            if failure is not None:
                log.error("projection %s: rebuild stopped at offset %d: %s", p.name, failure.offset, failure.error,
                          extra={"event": "projection_failure", "projection": p.name, "offset": failure.offset,
                                 "error": failure.error})

    async def wait_caught_up(self, *names: str) -> None:
        """Wait until the given projections (default: all) have folded everything up to the current head.

        Bound it with ``asyncio.wait_for``.
        """
        target = self.store.head
        handles = [self._handle(n) for n in names] if names else list(self._handles.values())

        delay = 0.001
        while True:
            rows = [await self._row(h.projection.name) for h in handles]
            if all(r is not None and (r.checkpoint >= target or r.status == "failed") for r in rows):
                return
            await asyncio.sleep(delay)  # progress lives in SQLite; poll with a short backoff
            delay = min(delay * 2, 0.05)
