"""The one writer: a task that owns the write connection, drains a bounded queue and commits in groups.

Group commit: take what is queued (up to ``max_batch`` jobs), ``BEGIN IMMEDIATE``, run every job, ``COMMIT``, then —
back on the event loop — advance ``head``, publish the committed events to the listeners (hub, reactions, async
projections), and only then resolve the callers' futures ("acknowledge last", DESIGN §13).

Every SQL statement runs in one dedicated thread, like aiosqlite's connection thread, but a whole group is one hop.
A command is decided by the pure core against the key's current row before any SQL is written, so a rejected
command costs no offset and never rolls back its neighbours. If SQL itself fails (disk full, I/O error) the group is
rolled back and its jobs are retried one by one, so only the job that cannot be written fails.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import msgspec

from ripple.core.decide import Change, KeyState, decide_delete, decide_set, decide_update
from ripple.core.events import (
    EMPTY_META,
    Delete,
    DeleteResult,
    Event,
    Meta,
    Send,
    SendResult,
    Set,
    SetResult,
    StateCommand,
    Update,
    UpdateResult,
)
from ripple.core.validate import encode_value
from ripple.errors import (
    ConflictError,
    DatabaseFullError,
    OverloadedError,
    RippleError,
    StorageError,
    StoreClosedError,
)
from ripple.migrations import migrate
from ripple.store import sql
from ripple.store.bus import CommitBus
from ripple.store.sqlite import Durability, connect_writer
from ripple.store.stats import WriterStats

log = logging.getLogger("ripple.writer")
T = TypeVar("T")

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000


def _text(raw: str | bytes | None) -> str | None:
    return raw.decode() if isinstance(raw, bytes) else raw


def command_hash(payload: Any) -> str:
    """The request hash of an idempotent command; object keys sorted, so a retry that re-serialises its JSON in
    another key order is still the same command."""
    return hashlib.sha256(msgspec.json.encode(payload, order="sorted")).hexdigest()


class WriteTxn:
    """What a job sees inside the writer's transaction. Used only in the writer thread.

    Writes are deferred: decisions run against ``_known`` (rows prefetched for the whole group in one query, then
    updated in memory), and events and final state rows go to SQLite with ``executemany`` in :meth:`flush`. Anything
    that reads ripple's tables through ``conn`` must call :meth:`flush` first; savepoints and the pre-COMMIT hooks do.
    """

    def __init__(self, conn: sqlite3.Connection, head: int, ts: int, max_value_bytes: int) -> None:
        self.conn = conn
        self.head = head
        self.ts = ts
        self.max_value_bytes = max_value_bytes
        self.events: list[Event] = []
        self._known: dict[tuple[str, str], KeyState | None] = {}
        self._rows: list[tuple[Any, ...]] = []
        self._dirty: set[tuple[str, str]] = set()

    def prefetch(self, keys: set[tuple[str, str]]) -> None:
        """Load the current rows of ``keys`` with one query per scope instead of one per command."""
        by_scope: dict[str, list[str]] = {}
        for scope, key in keys:
            if (scope, key) not in self._known:
                by_scope.setdefault(scope, []).append(key)
                self._known[(scope, key)] = None
        for scope, names in by_scope.items():
            for i in range(0, len(names), 500):
                chunk = names[i : i + 500]
                query = sql.SELECT_KEYS.format(",".join("?" * len(chunk)))
                for key, value, version, last, created in self.conn.execute(query, (scope, *chunk)):
                    self._known[(scope, key)] = KeyState(value, version, last, created)

    def key_state(self, scope: str, key: str) -> KeyState | None:
        k = (scope, key)
        if k in self._known:
            return self._known[k]
        row = self.conn.execute(sql.SELECT_KEY, k).fetchone()
        found = None if row is None else KeyState(row[0], row[1], row[2], row[3])
        self._known[k] = found
        return found

    def flush(self) -> None:
        """Write the pending events and the final row of every changed key."""
        if self._rows:
            self.conn.executemany(sql.INSERT_EVENT, self._rows)
            self._rows.clear()
        if self._dirty:
            upserts, deletes = [], []
            for k in self._dirty:
                st = self._known[k]
                if st is None:
                    deletes.append(k)
                else:
                    upserts.append((k[0], k[1], st.raw, st.version, st.last_seq, st.created_seq))
            if deletes:
                self.conn.executemany(sql.DELETE_STATE, deletes)
            if upserts:
                self.conn.executemany(sql.UPSERT_STATE, upserts)
            self._dirty.clear()

    def forget(self) -> None:
        """Drop what is known in memory (after a rollback to a savepoint, SQLite is the truth again)."""
        self._known.clear()
        self._rows.clear()
        self._dirty.clear()

    def _append(self, kind: str, scope: str, key: str, op: str, event_type: str, version: int,
                old: str | None, new: str | None, old_value: Any, new_value: Any, meta: Meta) -> int:
        seq = self.head + 1
        meta_text = "{}" if meta is EMPTY_META else _encode(meta).decode()
        self._rows.append((seq, self.ts, kind, scope, key, op, event_type, version, old, new, meta_text))
        self.head = seq
        self.events.append(Event(seq, self.ts, kind, scope, key, op,  # type: ignore[arg-type]
                                 event_type, version, old_value, new_value, meta))
        return seq

    def _write_change(self, change: Change, current: KeyState | None, meta: Meta) -> int:
        new_text = _text(change.new_raw)
        seq = self._append("state", change.scope, change.key, change.op, change.event_type, change.version,
                           _text(change.old_raw), new_text, change.old_value, change.new_value, meta)
        k = (change.scope, change.key)
        if new_text is None:
            self._known[k] = None
        else:
            created = seq if current is None else current.created_seq
            self._known[k] = KeyState(new_text, change.version, seq, created)
        self._dirty.add(k)
        return seq

    def apply(self, cmd: StateCommand, raw: bytes | None = None, meta: Meta = EMPTY_META) -> Any:
        """Decide and write one state command; raise a RippleError (and write nothing) if it is rejected.

        ``raw`` is a ``Set``'s value as validated compact JSON; ``None`` means encode it here.
        """
        current = self.key_state(cmd.scope, cmd.key)
        if isinstance(cmd, Set):
            if raw is None:
                raw = encode_value(cmd.value, self.max_value_bytes)
            change = decide_set(cmd, raw, current)
            seq = self._write_change(change, current, meta)
            return SetResult(change.old_value, change.new_value, change.version, seq)
        if isinstance(cmd, Update):
            change = decide_update(cmd, current, self.max_value_bytes)
            seq = self._write_change(change, current, meta)
            return UpdateResult(change.old_value, change.new_value, change.version, seq, change.errors)
        maybe = decide_delete(cmd, current)
        if maybe is None:
            return None
        seq = self._write_change(maybe, current, meta)
        return DeleteResult(maybe.old_value, seq)

    def send(self, cmd: Send, raw: bytes, meta: Meta = EMPTY_META) -> SendResult:
        if cmd.id is not None and meta.id != cmd.id:
            meta = msgspec.structs.replace(meta, id=cmd.id)
        seq = self._append("stream", cmd.stream, cmd.group, "send", cmd.type, 0, None, raw.decode(), None,
                           _decode(raw), meta)
        return SendResult(seq)

    def savepoint(self) -> _Savepoint:
        return _Savepoint(self)


class _Savepoint:
    """Roll back SQL *and* the transaction's head, event list and in-memory rows together."""

    def __init__(self, txn: WriteTxn) -> None:
        self.txn = txn

    def __enter__(self) -> None:
        self.txn.flush()
        self.head, self.n_events = self.txn.head, len(self.txn.events)
        self.txn.conn.execute("SAVEPOINT job")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        conn = self.txn.conn
        if exc_type is None:
            self.txn.flush()
            conn.execute("RELEASE job")
            return
        if conn.in_transaction:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
        self.txn.forget()
        self.txn.head = self.head
        del self.txn.events[self.n_events :]


# ---- jobs -----------------------------------------------------------------------------------------------------


class Job:
    """A unit of work for the writer. ``run`` executes in the writer thread inside the group's transaction."""

    __slots__ = ("failed", "fut", "outcome")
    op = "txn"  # what the metrics call it when it is refused

    def __init__(self) -> None:
        self.fut: asyncio.Future[Any] | None = None
        self.outcome: Any = None
        self.failed = False

    def run(self, txn: WriteTxn) -> Any:
        raise NotImplementedError

    def keys(self) -> list[tuple[str, str]]:
        """The state keys this job will read, so the group can load them in one query."""
        return []


class CommandJob(Job):
    """One state command or a stream send, optionally idempotent."""

    __slots__ = ("cmd", "idempotency_key", "meta", "raw")

    def __init__(
        self, cmd: StateCommand | Send, raw: bytes | None, meta: Meta, idempotency_key: str | None
    ) -> None:
        super().__init__()
        self.cmd, self.raw, self.meta, self.idempotency_key = cmd, raw, meta, idempotency_key

    def run(self, txn: WriteTxn) -> Any:
        if self.idempotency_key is None:
            return self._apply(txn)
        return idempotent(txn, self.idempotency_key, self.meta.actor, self.cmd, self._result_type(), self._apply)

    def keys(self) -> list[tuple[str, str]]:
        return [] if isinstance(self.cmd, Send) else [(self.cmd.scope, self.cmd.key)]

    @property
    def op(self) -> str:  # type: ignore[override]
        return type(self.cmd).__name__.lower()  # set, update, delete, send

    def _result_type(self) -> Any:
        return {Set: SetResult, Update: UpdateResult, Delete: DeleteResult, Send: SendResult}[type(self.cmd)]

    def _apply(self, txn: WriteTxn) -> Any:
        if isinstance(self.cmd, Send):
            assert self.raw is not None
            return txn.send(self.cmd, self.raw, self.meta)
        return txn.apply(self.cmd, self.raw, self.meta)


class BatchJob(Job):
    """All-or-nothing: the commands get consecutive offsets or none does."""

    __slots__ = ("cmds", "idempotency_key", "meta", "raws")
    op = "batch"

    def __init__(
        self,
        cmds: Sequence[StateCommand],
        raws: Sequence[bytes | None],
        meta: Meta,
        idempotency_key: str | None,
    ) -> None:
        super().__init__()
        self.cmds, self.raws, self.meta, self.idempotency_key = list(cmds), list(raws), meta, idempotency_key

    def run(self, txn: WriteTxn) -> Any:
        if self.idempotency_key is None:
            return self._apply(txn)
        return idempotent(txn, self.idempotency_key, self.meta.actor, self.cmds, None, self._apply)

    def keys(self) -> list[tuple[str, str]]:
        return [(c.scope, c.key) for c in self.cmds]

    def _apply(self, txn: WriteTxn) -> list[Any]:
        with txn.savepoint():
            results = []
            for index, (cmd, raw) in enumerate(zip(self.cmds, self.raws, strict=True)):
                try:
                    results.append(txn.apply(cmd, raw, self.meta))
                except RippleError as exc:
                    exc.detail = {**(exc.detail if isinstance(exc.detail, dict) else {}), "index": index}
                    exc.message = f"batch command {index}: {exc.message}"
                    exc.args = (exc.message,)
                    if exc.code == "precondition_failed":
                        raise ConflictError(exc.message, detail=exc.detail) from None
                    raise
            return results


class TxnJob(Job):
    """Custom work inside the writer's transaction (cursor advances, projection statements), in a SAVEPOINT."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[WriteTxn], Any]) -> None:
        super().__init__()
        self.fn = fn

    def run(self, txn: WriteTxn) -> Any:
        with txn.savepoint():
            return self.fn(txn)


def idempotent(
    txn: WriteTxn, key: str, actor: str | None, payload: Any, result_type: Any, apply: Callable[[WriteTxn], Any]
) -> Any:
    """Run ``apply`` once per (actor, idempotency key); a repeat returns the stored result and appends nothing.

    Keys are per actor (DESIGN §15): two tokens using the same key never see each other's results.
    """
    digest = command_hash(payload)
    owner = actor or ""
    row = txn.conn.execute(
        "SELECT request_hash, result FROM idempotency WHERE actor = ? AND key = ?", (owner, key)
    ).fetchone()
    if row is not None:
        if row[0] != digest:
            raise ConflictError(
                f"idempotency key {key!r} was already used for a different command",
                code="idempotency_key_reused",
                detail={"idempotency_key": key},
            )
        return _decode_stored_result(row[1], payload, result_type)
    result = apply(txn)
    seq = getattr(result, "offset", None)
    txn.conn.execute(
        "INSERT INTO idempotency (actor, key, request_hash, seq, result, created_ts) VALUES (?, ?, ?, ?, ?, ?)",
        (owner, key, digest, seq, _encode(result).decode(), txn.ts),
    )
    return result


_RESULT_OF: dict[type, type] = {Set: SetResult, Update: UpdateResult, Delete: DeleteResult}


def _decode_stored_result(text: str, payload: Any, result_type: Any) -> Any:
    if isinstance(payload, list):  # a batch: decode each result by its command's type
        items = msgspec.json.decode(text)
        return [
            None if item is None else msgspec.convert(item, _RESULT_OF[type(cmd)])
            for cmd, item in zip(payload, items, strict=True)
        ]
    return msgspec.json.decode(text, type=result_type | None)


# ---- the writer -----------------------------------------------------------------------------------------------


class _Call:
    """Maintenance work for the writer thread, between groups (open, ``call``)."""

    __slots__ = ("fn", "fut")

    def __init__(self, fn: Callable[[], Any], fut: asyncio.Future[Any]) -> None:
        self.fn, self.fut = fn, fut


_STOP = None  # queued by close(): the thread commits what precedes it, runs the final step and exits


class Writer:
    """Owns the write connection. Create with :meth:`start`; stop with :meth:`close`.

    The writer thread drains a queue that the event loop fills: it takes up to ``max_batch`` queued jobs, commits
    them, posts the acknowledgement to the loop and, if more jobs arrived meanwhile, commits those at once — the loop
    acknowledges one group while the thread writes the next. The loop hands a burst of submissions over once (a
    callback after the ones already due), so the writers woken by one commit form the next group together.
    """

    def __init__(
        self,
        path: str,
        *,
        durability: Durability = "full",
        max_batch: int = 1000,
        max_queue: int = 100_000,
        max_value_bytes: int = 1024 * 1024,
        bus: CommitBus | None = None,
    ) -> None:
        self.path = path
        self.durability = durability
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.max_value_bytes = max_value_bytes
        self.head = 0
        self._txn_head = 0
        self.commits = 0
        self.bus = bus or CommitBus()
        self.bus.bind(self)
        # Appended on the loop, taken by the writer thread (deque appends and pops are atomic).
        self._queue: collections.deque[Job | _Call | None] = collections.deque()
        self._signal: queue.SimpleQueue[None] = queue.SimpleQueue()  # wakes the writer thread while it waits
        self._kick_due = False
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._final: Callable[[sqlite3.Connection], Any] | None = None
        self._conn: sqlite3.Connection | None = None
        self._attempt: tuple[int, WriteTxn | None] = (0, None)
        self._head_waiters: list[tuple[int, asyncio.Future[None]]] = []
        # True while the write connection cannot be (re)opened after an I/O error: writes fail, reads go on.
        self.degraded = False
        self.stats = WriterStats()

    # -- lifecycle

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._stopped = loop.create_future()
        self._thread = threading.Thread(target=self._thread_main, name="ripple-writer", daemon=True)
        self._thread.start()
        self.head = await self._maintenance(self._open)
        self._txn_head = self.head

    def _connect(self) -> sqlite3.Connection:
        """A new write connection (the PostgreSQL writer returns its sqlite3-shaped adapter)."""
        return connect_writer(self.path, self.durability)

    def _open(self) -> int:
        self._conn = self._connect()
        migrate(self._conn, self.path)
        head = sql.head(self._conn)
        self._conn.execute(
            "DELETE FROM idempotency WHERE created_ts < ?", (int(time.time() * 1000) - IDEMPOTENCY_TTL_MS,)
        )
        return head

    async def close(self, final: Callable[[sqlite3.Connection], Any] | None = None) -> None:
        """Commit (or fail) everything queued, run ``final`` on the connection, then close it. Idempotent."""
        if self._closing:
            if self._stopped is not None:
                await asyncio.shield(self._stopped)
            return
        self._closing = True
        if self._thread is None:
            return
        self._final = final
        self._queue.append(_STOP)
        self._signal.put(None)
        assert self._stopped is not None
        await asyncio.shield(self._stopped)
        await asyncio.to_thread(self._thread.join)

    def _close_conn(self, final: Callable[[sqlite3.Connection], Any] | None = None, quiet: bool = False) -> None:
        if self._conn is not None and quiet:
            try:
                self._conn.close()
            except sqlite3.Error as exc:
                log.warning("closing the failed write connection: %s", exc)
            self._conn = None
            return
        if self._conn is not None:
            if final is not None:
                try:
                    final(self._conn)
                except sqlite3.Error as exc:
                    log.warning("final step on close failed: %s", exc)
            self._conn.close()
            self._conn = None

    @property
    def closed(self) -> bool:
        return self._closing

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    # -- submitting

    def submit(self, job: Job) -> asyncio.Future[Any]:
        if self._closing:
            raise StoreClosedError("the store is closed")
        if len(self._queue) >= self.max_queue:
            if self.stats.overloaded(job.op):
                log.warning("the write queue is full (%d commands): refusing writes with 503 until it drains",
                            self.max_queue, extra={"event": "overload", "max_queue": self.max_queue})
            raise OverloadedError(f"the write queue is full ({self.max_queue} commands); retry later")
        loop = self._loop
        assert loop is not None, "the writer is not started"
        fut: asyncio.Future[Any] = loop.create_future()
        job.fut = fut
        self._queue.append(job)
        if not self._kick_due:
            self._kick_due = True
            loop.call_soon(self._kick)  # after the callbacks already due: a burst of submissions is one group
        return fut

    def _kick(self) -> None:
        self._kick_due = False
        self._signal.put(None)

    async def run_in_txn(self, fn: Callable[[WriteTxn], T]) -> T:
        """Run ``fn`` inside the next group commit (in a SAVEPOINT) and return its result after COMMIT."""
        result: T = await self.submit(TxnJob(fn))
        return result

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with the write connection in the writer thread, outside any group (maintenance)."""
        assert self._conn is not None

        def run() -> T:
            assert self._conn is not None
            return fn(self._conn)

        return await self._maintenance(run)

    async def _maintenance(self, fn: Callable[[], T]) -> T:
        if self._thread is None or not self._thread.is_alive():
            raise StoreClosedError("the store is closed")
        assert self._loop is not None
        fut: asyncio.Future[T] = self._loop.create_future()
        self._queue.append(_Call(fn, fut))
        self._signal.put(None)
        return await fut

    # -- the writer thread: groups and maintenance, in queue order

    def _thread_main(self) -> None:
        loop = self._loop
        assert loop is not None
        q = self._queue
        try:
            while True:
                if not q:
                    self._signal.get()  # idle until the loop hands work over
                    continue
                item = q[0]
                if item is _STOP:
                    q.popleft()
                    break
                if isinstance(item, _Call):
                    q.popleft()
                    self._run_call(loop, item)
                    continue
                jobs: list[Job] = []
                while q and len(jobs) < self.max_batch:
                    item = q[0]
                    if not isinstance(item, Job):
                        break
                    jobs.append(item)
                    q.popleft()
                started = time.perf_counter()
                events = self._commit_group(jobs)
                loop.call_soon_threadsafe(self._after_commit, jobs, events, time.perf_counter() - started)
            self._close_conn(self._final)
            loop.call_soon_threadsafe(self._on_stopped, None)
        except BaseException as exc:  # a bug: fail what is left (on the loop), never drop it silently
            log.exception("writer stopped unexpectedly")
            loop.call_soon_threadsafe(self._on_stopped, exc)

    @staticmethod
    def _run_call(loop: asyncio.AbstractEventLoop, call: _Call) -> None:
        try:
            result = call.fn()
        except BaseException as exc:
            loop.call_soon_threadsafe(_settle, call.fut, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, call.fut, result, None)

    def _on_stopped(self, crash: BaseException | None) -> None:
        self._closing = True
        if crash is not None:
            self._fail_pending(StorageError(f"the writer stopped: {crash!r}"))
        self._fail_pending(StoreClosedError("the store closed before this command was written"))
        self._release_head_waiters()
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def _overload_over(self) -> None:
        lasted = self.stats.drained()
        log.info("the write queue drained after %.1f s of overload; accepting writes", lasted,
                 extra={"event": "overload_end", "seconds": lasted})

    def _fail_pending(self, error: RippleError) -> None:
        while self._queue:
            item = self._queue.popleft()
            if item is not None and item.fut is not None and not item.fut.done():
                item.fut.set_exception(error)

    async def wait_for_head(self, offset: int) -> None:
        """Return once ``head`` reaches ``offset`` (a read may see a COMMIT a moment before it is acknowledged)."""
        if offset <= self.head:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._head_waiters.append((offset, fut))
        await fut

    def _release_head_waiters(self) -> None:
        waiting = []
        for offset, fut in self._head_waiters:
            if offset <= self.head or self._closing:
                if not fut.done():
                    fut.set_result(None)
            else:
                waiting.append((offset, fut))
        self._head_waiters = waiting

    def _after_commit(self, jobs: list[Job], events: list[Event], seconds: float = 0.0) -> None:
        if events:
            self.stats.committed(len(events), seconds)
            self._advance(events)
        self._acknowledge(jobs)

    def _advance(self, events: list[Event]) -> None:
        """``head`` moves to the last of ``events`` (the next offsets, in order) and the listeners get them."""
        self.head = events[-1].offset
        self.commits += 1
        if self._head_waiters:
            self._release_head_waiters()
        self.bus.publish(events)

    def _acknowledge(self, jobs: list[Job]) -> None:
        for job in jobs:
            fut = job.fut
            # A cancelled caller: its command may still be committed (DESIGN §12).
            if fut is None or fut.done():
                continue
            if job.failed:
                self.stats.refused[(job.op, getattr(job.outcome, "code", "error"))] += 1
                fut.set_exception(job.outcome)
            else:
                fut.set_result(job.outcome)
        if not self._queue and self.stats.overloaded_since is not None:
            self._overload_over()

    # -- in the writer thread

    def _commit_group(self, jobs: list[Job]) -> list[Event]:
        if self._conn is None and not self._reopen():
            error = StorageError("the database cannot be opened for writing; the store is degraded")
            return self._fail_all(jobs, error)
        try:
            return self._try_group(jobs)
        except sqlite3.Error as exc:
            if self._is_io_error(exc):
                return self._after_io_error(jobs, exc)
            if len(jobs) == 1:
                self._fail_job(jobs[0], exc)
                return []
            log.warning("group of %d commands failed (%s); retrying them one by one", len(jobs), exc)
            return self._one_by_one(jobs)

    def _one_by_one(self, jobs: list[Job]) -> list[Event]:
        events: list[Event] = []
        for i, job in enumerate(jobs):
            try:
                events.extend(self._try_group([job]))
            except sqlite3.Error as single:
                if self._is_io_error(single):
                    return events + self._after_io_error(jobs[i:], single)
                self._fail_job(job, single)
        return events

    def _after_io_error(self, jobs: list[Job], exc: sqlite3.Error) -> list[Event]:
        """Never retry on the connection that failed (DESIGN §13): reopen, then learn from the file what happened."""
        log.error("I/O error on the write connection (%s); reopening it before anything else", exc)
        before, txn = self._attempt
        if not self._reopen():
            return self._fail_all(jobs, StorageError(f"I/O error ({exc}); the store is degraded until the database "
                                                     "can be reopened"))
        on_disk = self._read_head()
        if on_disk == before:  # nothing reached the file: each job may be tried again, alone, on the new connection
            if len(jobs) == 1:
                return self._fail_all(jobs, StorageError(f"the database could not write this command: {exc}"))
            return self._one_by_one(jobs)
        if txn is not None and on_disk == txn.head:  # the COMMIT did reach the file before the error
            self._txn_head = on_disk
            return txn.events
        self.degraded = True
        log.error("after the I/O error the log head is %d, expected %d or %s; refusing writes", on_disk, before,
                  None if txn is None else txn.head)
        return self._fail_all(jobs, StorageError("the log head changed unexpectedly after an I/O error; degraded"))

    def _reopen(self) -> bool:
        self._close_conn(quiet=True)
        try:
            self._conn = self._connect()
            self._txn_head = self._read_head()
        except sqlite3.Error as exc:
            log.error("cannot reopen the write connection: %s", exc)
            self._conn = None
            self.degraded = True
            return False
        self.degraded = False
        return True

    def _read_head(self) -> int:
        assert self._conn is not None
        return sql.head(self._conn)

    @staticmethod
    def _fail_all(jobs: list[Job], error: RippleError) -> list[Event]:
        for job in jobs:
            job.outcome, job.failed = error, True
        return []

    def _try_group(self, jobs: list[Job]) -> list[Event]:
        conn = self._conn
        assert conn is not None
        self._attempt = (self._txn_head, None)
        conn.execute("BEGIN IMMEDIATE")
        try:
            txn = WriteTxn(conn, self._head_in_txn(conn), int(time.time() * 1000), self.max_value_bytes)
            self._attempt = (txn.head, txn)
            txn.prefetch({k for job in jobs for k in job.keys()})
            for job in jobs:
                try:
                    job.outcome, job.failed = job.run(txn), False
                except RippleError as exc:
                    job.outcome, job.failed = exc, True
            txn.flush()
            if txn.events:
                self.bus.run_txn_hooks(txn, txn.events)
                self._before_commit(txn)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._txn_head = txn.head  # the public head moves on the loop, in _after_commit (acknowledge last)
        return txn.events

    def _head_in_txn(self, conn: sqlite3.Connection) -> int:
        """The head a new transaction appends after: this writer is the file's only one, so it knows it."""
        return self._txn_head

    def _before_commit(self, txn: WriteTxn) -> None:
        """Last step inside a transaction that appended events (the PostgreSQL writer notifies the other nodes)."""

    @staticmethod
    def _is_io_error(exc: sqlite3.Error) -> bool:
        return _is_io_error(exc)

    def _fail_job(self, job: Job, exc: sqlite3.Error) -> None:
        job.failed = True
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL or "full" in str(exc).lower():
            job.outcome = DatabaseFullError(f"the database is full: {exc}")
            return
        job.outcome = StorageError(f"the database could not write this command: {exc}")


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if fut.done():
        return
    if exc is None:
        fut.set_result(result)
    else:
        fut.set_exception(exc)


def _is_io_error(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF == sqlite3.SQLITE_IOERR) or "disk i/o" in str(exc).lower()
