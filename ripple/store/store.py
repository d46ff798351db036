"""The embedded API (DESIGN §4, §12). A thin facade: validation at the edge, then the writer or the reader."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, overload

import msgspec

from ripple.auth.context import current_identity, require_admin
from ripple.core.events import (
    EMPTY_META,
    Delete,
    DeleteResult,
    Entry,
    Event,
    Groups,
    KindFilter,
    Meta,
    Page,
    Send,
    SendResult,
    Set,
    SetResult,
    StateCommand,
    Update,
    UpdateResult,
)
from ripple.core.filter import Filter
from ripple.core.ops import UpdateOp
from ripple.core.validate import (
    DEFAULT_MAX_VALUE_BYTES,
    encode_data,
    encode_value,
    validate_key,
    validate_name,
    validate_scope,
)
from ripple.errors import (
    CascadeLimitError,
    ConflictError,
    DatabaseFileError,
    InvalidOpError,
    OffsetOutOfRangeError,
    RippleError,
    StoreClosedError,
    ValidationError,
)
from ripple.limits import DEFAULT_MAX_QUEUE, MAX_BATCH_COMMANDS
from ripple.projections.base import Projection, ProjectionState
from ripple.projections.builtin import metrics_projection
from ripple.projections.manager import Projections
from ripple.reactions import ChangeEvent, H, Reactions, Start
from ripple.store import retention, sql
from ripple.store.backend import connect_reader
from ripple.store.bus import CommitBus
from ripple.store.origin import DEFAULT_CASCADE_LIMIT, current_origin
from ripple.store.postgres import PgReader, PgWriter, is_postgres_url, redact
from ripple.store.reader import Reader
from ripple.store.retention import Blocker, CompactResult, Floor, RetentionPolicy
from ripple.store.sqlite import Durability, WriterLock, connect_checkpointer, inspect_file
from ripple.store.stats import WriterStats
from ripple.store.writer import IDEMPOTENCY_TTL_MS, BatchJob, CommandJob, Writer, WriteTxn
from ripple.subscriptions.catchup import check_after_range
from ripple.subscriptions.cursor import Limits
from ripple.subscriptions.embedded import Subscription
from ripple.subscriptions.hub import Hub, HubSettings

log = logging.getLogger("ripple.store")

MAX_LIST_LIMIT = 1000
MAX_EVENTS_LIMIT = 10_000
CATCH_UP_SECONDS = 5.0  # how long a node behind a client's resume offset waits for its tailer (shared logs only)


def _check_offset(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            f"{name} must be an integer, not {type(value).__name__}", detail={name: repr(value)}
        )
    if value < minimum:
        raise ValidationError(f"{name} must be >= {minimum}, got {value}", detail={name: value})
    return value


def parse_ops(ops: object) -> list[UpdateOp]:
    """Accept op Structs or plain dicts (``{"type": "set", ...}``); anything else is an :class:`InvalidOpError`."""
    if not isinstance(ops, list | tuple):
        raise InvalidOpError(f"ops must be a list, not {type(ops).__name__}")
    try:
        return msgspec.convert(list(ops), list[UpdateOp], from_attributes=True)
    except msgspec.ValidationError as exc:
        raise InvalidOpError(f"invalid update op: {exc}", detail={"reason": str(exc)}) from None


class _Opener:
    """``Store.open(...)`` is both awaitable and an async context manager."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __await__(self) -> Generator[Any, None, Store]:
        return self._start().__await__()

    async def _start(self) -> Store:
        await self._store._start()
        return self._store

    async def __aenter__(self) -> Store:
        return await self._start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._store.close()


class Store:
    """One ripple database file, open for reading and writing.

    ``async with Store.open("app.db") as store: await store.set("todos", "a", {...})``
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "ripple.db",
        *,
        durability: Durability = "full",
        max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
        max_batch: int = 1000,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_batch_commands: int = MAX_BATCH_COMMANDS,
        readers: int = 4,
        log_readers: int = 2,
        cascade_limit: int = DEFAULT_CASCADE_LIMIT,
        run_reactions: bool = True,
        subscription_settings: HubSettings | None = None,
        retention: RetentionPolicy | None = None,
    ) -> None:
        if durability not in ("full", "normal"):
            raise ValidationError(f"durability must be 'full' or 'normal', not {durability!r}")
        self.path = os.fspath(path)
        #: True on PostgreSQL (``postgresql://...``): several nodes may share the log (DESIGN §11).
        self.shared_log = is_postgres_url(self.path)
        self.durability: Durability = durability
        self.max_value_bytes = max_value_bytes
        self.max_batch_commands = max_batch_commands
        self.cascade_limit = cascade_limit
        #: The commit bus: listeners after COMMIT, hooks inside the transaction, jobs merged into group commits.
        self.commits = CommitBus()
        self.writer: Writer = (PgWriter if self.shared_log else Writer)(
            self.path,
            durability=durability,
            max_batch=max_batch,
            max_queue=max_queue,
            max_value_bytes=max_value_bytes,
            bus=self.commits,
        )
        self.reader: Reader = (PgReader if self.shared_log else Reader)(self.path, size=readers, log_size=log_readers)
        self.retention = retention
        # The floor (ripple.store.retention): set from the file on open, then by each compaction step in the writer
        # thread *before* its COMMIT, so a reader that saw the removal also sees the new floor (see check_read).
        self._floor = Floor()
        #: Held by compaction and projection rebuilds: a rebuild folds the base and then the events after it, and a
        #: compaction moving the floor in between would take events from under it.
        self.maintenance = asyncio.Lock()
        self.counters: dict[str, int] = {"refused_cascades": 0}
        self._lock: WriterLock | None = None if self.shared_log else WriterLock(self.path)
        self._started = False
        self._closed = False
        self._background: set[asyncio.Task[Any]] = set()
        self._checkpoint_due = asyncio.Event()
        self._close_callbacks: list[Any] = []
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._checkpoint_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ripple-checkpoint")
        # reactions and projections. run_reactions=False: the offline tool registers the user's
        # projections; reactions are accepted but never run.
        self.reactions = Reactions(self, enabled=run_reactions)
        self.projections = Projections(self)
        self.projections.register(metrics_projection())

        # the hub fans committed events out to every follower of the log (subscriptions, reactions, projections)
        self.hub = Hub(lambda: self.writer.head, self.counters, subscription_settings)

    @classmethod
    def open(cls, path: str | os.PathLike[str] = "ripple.db", **options: Any) -> _Opener:
        """Open (creating if missing) a ripple file: ``async with Store.open("app.db", durability="full")``."""
        return _Opener(cls(path, **options))

    # -- lifecycle

    async def _start(self) -> None:
        if self._started:
            raise RippleError("this store was already opened")
        self._started = True
        if self.shared_log:
            if self.retention is not None and self.retention.enabled:
                raise ValidationError("retention (compaction) is not supported on PostgreSQL yet (docs/scaling.md)")
        else:
            parent = Path(self.path).absolute().parent
            if not parent.is_dir():
                raise DatabaseFileError(f"cannot open {self.path}: the folder {parent} does not exist")
            inspect_file(self.path)  # refuses foreign or newer files before anything is written
        if self._lock is not None:
            self._lock.acquire()
        try:
            await self.writer.start()
            await self.reader.open()
            self._floor = await asyncio.to_thread(self._read_floor)
        except BaseException:
            with contextlib.suppress(Exception):
                await self.writer.close()
            if self._lock is not None:
                self._lock.release()
            raise
        self.commits.subscribe(lambda _events: self._checkpoint_due.set())
        # publish to subscribers after each COMMIT; close them first thing on close
        self.commits.subscribe(self.hub.publish)
        self.on_close(self.hub.aclose)
        if not self.shared_log:
            self.spawn(self._checkpointer(), name="ripple-checkpointer")
        self.spawn(self._expire_idempotency(), name="ripple-idempotency-expiry")
        if self.retention is not None and self.retention.enabled:
            self.spawn(self._retention_loop(self.retention), name="ripple-retention")
        try:
            await self.projections.start()  # tables and rows exist before open returns; catch-ups run behind
        except BaseException:
            await self.close()
            raise
        self.reactions.start()

    async def close(self) -> None:
        """Commit or reject everything queued, stop background work and close the file. Idempotent."""
        if self._closed or not self._started:
            self._closed = True
            return
        self._closed = True
        for callback in reversed(self._close_callbacks):
            try:
                await callback()
            except Exception:
                log.exception("close callback failed")
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        # The checkpoint thread may still be inside a checkpoint: close its connection in that same thread.
        await asyncio.get_running_loop().run_in_executor(self._checkpoint_thread, self._close_checkpointer)
        self._checkpoint_thread.shutdown(wait=True)
        await self.reader.close()
        if self._lock is None:
            await self.writer.close()
        else:
            await self.writer.close(final=lambda conn: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)"))
            self._lock.release()

    async def __aenter__(self) -> Store:
        if not self._started:
            await self._start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def on_close(self, callback: Any) -> None:
        """Run ``await callback()`` first thing in :meth:`close` (later registrations run first)."""
        self._close_callbacks.append(callback)

    def spawn(self, coro: Awaitable[Any], *, name: str) -> asyncio.Task[Any]:
        """Start a background task that the store keeps a reference to and cancels on close."""
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def degraded(self) -> bool:
        """True while writes are refused after an I/O error (``/v1/health`` then says ``degraded``)."""
        return self.writer.degraded

    @property
    def head(self) -> int:
        """The last committed offset (no I/O)."""
        return self.writer.head

    @property
    def queue_depth(self) -> int:
        """Commands waiting for the writer."""
        return self.writer.queue_depth

    @property
    def commit_count(self) -> int:
        """Group commits since the store opened."""
        return self.writer.commits

    @property
    def max_queue(self) -> int:
        """Commands the writer queue holds before writes are refused with :class:`OverloadedError` (503)."""
        return self.writer.max_queue

    @property
    def writer_stats(self) -> WriterStats:
        """Group-commit sizes and durations, refused commands, overload episodes (``/metrics``)."""
        return self.writer.stats

    def degraded_reasons(self) -> list[str]:
        """Why writes are refused or delayed right now (``/v1/health`` says ``degraded`` with these); empty when
        the writer is healthy."""
        reasons = []
        if self._closed:
            reasons.append("store_closed: the store is closed (shutting down)")
        elif self.writer.closed:
            reasons.append("writer_stopped: the writer stopped; writes are refused")
        if self.writer.degraded:
            reasons.append("storage: the database cannot be opened for writing after an I/O error; writes are refused")
        since = self.writer.stats.overloaded_since
        if since is not None:
            reasons.append(f"overloaded: the write queue is full ({self.writer.max_queue} commands); writes get 503 "
                           f"with Retry-After until it drains (since {time.monotonic() - since:.1f} s)")
        return reasons

    async def catch_up_to(self, offset: int) -> None:
        """On a shared log a client may resume at an offset another node acknowledged: wait (at most
        ``CATCH_UP_SECONDS``) until this node has published it (DESIGN §11). No-op on SQLite, and for an offset
        beyond the log's head (the caller refuses it)."""
        if not self.shared_log or offset <= self.head:
            return
        async with self.reader.connection("log") as conn:
            rows = list(await conn.execute_fetchall(sql.HEAD))
        if offset > int(rows[0][0]):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.writer.wait_for_head(offset), CATCH_UP_SECONDS)

    def refuse_on_postgres(self, what: str) -> None:
        """Raise :class:`ValidationError` for a SQLite-only operation on a PostgreSQL store (docs/scaling.md)."""
        if self.shared_log:
            raise ValidationError(f"{what} is not supported on PostgreSQL ({redact(self.path)}) yet: use "
                                  "PostgreSQL's own tools (docs/scaling.md)")

    def check_open(self) -> None:
        """Raise :class:`StoreClosedError` unless the store is open."""
        if self._closed or not self._started:
            raise StoreClosedError("the store is closed" if self._closed else "the store is not open yet")

    def _checkpoint(self) -> None:
        try:
            if self._checkpoint_conn is None:
                self._checkpoint_conn = connect_checkpointer(self.path)
            self._checkpoint_conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error as exc:
            log.warning("background checkpoint failed: %s", exc)

    def _close_checkpointer(self) -> None:
        if self._checkpoint_conn is not None:
            self._checkpoint_conn.close()
            self._checkpoint_conn = None

    async def expire_idempotency(self, now_ms: int | None = None) -> int:
        """Forget idempotency records older than 24 h (through the writer, merged into a group commit)."""
        cutoff = (int(time.time() * 1000) if now_ms is None else now_ms) - IDEMPOTENCY_TTL_MS

        def purge(txn: WriteTxn) -> int:
            return int(txn.conn.execute("DELETE FROM idempotency WHERE created_ts < ?", (cutoff,)).rowcount)

        return await self.writer.run_in_txn(purge)

    async def _expire_idempotency(self) -> None:
        while True:
            await asyncio.sleep(3600)  # the writer also purges on open
            try:
                await self.expire_idempotency()
            except RippleError as exc:
                log.warning("idempotency expiry failed: %s", exc)

    async def _checkpointer(self) -> None:
        # PASSIVE checkpoints off the writer's connection: auto-checkpoint is off there (DESIGN §13).
        while True:
            await self._checkpoint_due.wait()
            self._checkpoint_due.clear()
            await asyncio.get_running_loop().run_in_executor(self._checkpoint_thread, self._checkpoint)
            await asyncio.sleep(0.5)  # at most two checkpoints a second

    # -- writes

    def write_meta(self, idempotency_key: str | None = None) -> Meta:
        """The ``meta`` of a write made now: its cause and depth while a reaction runs (raises
        :class:`CascadeLimitError`, logged and counted, beyond the cascade limit), and the name of the identity it
        is made as (``meta.actor``, DESIGN §15; see :func:`ripple.auth.acting_as`)."""
        origin = current_origin.get()
        identity = current_identity.get()
        actor = None if identity is None else identity.name
        if origin is None:
            if idempotency_key is None and actor is None:
                return EMPTY_META
            return Meta(idempotency_key=idempotency_key, actor=actor)
        depth = origin.depth or 0
        if depth > self.cascade_limit:
            self.counters["refused_cascades"] += 1
            log.error(
                "refused a write at cascade depth %d (limit %d), caused by offset %s",
                depth,
                self.cascade_limit,
                origin.cause,
                extra={"event": "refused_cascade", "cause": origin.cause, "depth": depth, "limit": self.cascade_limit},
            )
            raise CascadeLimitError(
                f"write refused: cascade depth {depth} exceeds the limit of {self.cascade_limit} "
                f"(caused by offset {origin.cause})",
                detail={"cause": origin.cause, "depth": depth, "limit": self.cascade_limit},
            )
        return msgspec.structs.replace(origin, idempotency_key=idempotency_key, actor=actor)

    def _submit(self, job: CommandJob | BatchJob) -> asyncio.Future[Any]:
        self.check_open()
        return self.writer.submit(job)

    def prepare(self, cmd: StateCommand) -> tuple[StateCommand, bytes | None]:
        """Validate and authorize a command at the edge; returns it (ops parsed) with a Set's value encoded."""
        validate_scope(cmd.scope)
        validate_key(cmd.key)
        identity = current_identity.get()
        if identity is not None:
            identity.require_write(cmd.scope)
        if cmd.expected_offset is not None:
            _check_offset("expected_offset", cmd.expected_offset)
        if isinstance(cmd, Set):
            return cmd, encode_value(cmd.value, self.max_value_bytes)
        if isinstance(cmd, Update):
            ops = parse_ops(cmd.ops)
            return (cmd if ops is cmd.ops else msgspec.structs.replace(cmd, ops=ops)), None
        if isinstance(cmd, Delete):
            return cmd, None
        raise ValidationError(f"not a state command: {cmd!r}")

    async def set(
        self,
        scope: str,
        key: str,
        value: Any,
        *,
        expected_offset: int | None = None,
        idempotency_key: str | None = None,
    ) -> SetResult:
        cmd, raw = self.prepare(Set(scope, key, value, expected_offset))
        result: SetResult = await self._submit(
            CommandJob(cmd, raw, self.write_meta(idempotency_key), idempotency_key)
        )
        return result

    async def update(
        self,
        scope: str,
        key: str,
        ops: Sequence[UpdateOp | dict[str, Any]],
        *,
        expected_offset: int | None = None,
        idempotency_key: str | None = None,
    ) -> UpdateResult:
        cmd, _ = self.prepare(Update(scope, key, parse_ops(ops), expected_offset))
        result: UpdateResult = await self._submit(
            CommandJob(cmd, None, self.write_meta(idempotency_key), idempotency_key)
        )
        return result

    async def delete(
        self, scope: str, key: str, *, expected_offset: int | None = None, idempotency_key: str | None = None
    ) -> DeleteResult | None:
        """Delete a key; a missing key appends nothing and returns ``None``."""
        cmd, _ = self.prepare(Delete(scope, key, expected_offset))
        result: DeleteResult | None = await self._submit(
            CommandJob(cmd, None, self.write_meta(idempotency_key), idempotency_key)
        )
        return result

    async def batch(
        self, commands: Sequence[StateCommand], *, idempotency_key: str | None = None
    ) -> list[SetResult | UpdateResult | DeleteResult | None]:
        """Apply up to 1000 commands all-or-nothing, with consecutive offsets, one result per command."""
        if not isinstance(commands, list | tuple):
            raise ValidationError("batch takes a list of Set, Update and Delete commands")
        if len(commands) > self.max_batch_commands:
            raise ValidationError(f"a batch holds at most {self.max_batch_commands} commands, got {len(commands)}",
                                  detail={"limit": self.max_batch_commands, "commands": len(commands)})
        prepared, raws = [], []
        for index, cmd in enumerate(commands):
            try:
                if not isinstance(cmd, Set | Update | Delete):
                    raise ValidationError(f"not a Set, Update or Delete command: {type(cmd).__name__}")
                p, raw = self.prepare(cmd)
            except RippleError as exc:
                exc.message = f"batch command {index}: {exc.message}"
                exc.args = (exc.message,)
                exc.detail = {**(exc.detail if isinstance(exc.detail, dict) else {}), "index": index}
                raise
            prepared.append(p)
            raws.append(raw)
        if not prepared:
            return []
        result: list[Any] = await self._submit(
            BatchJob(prepared, raws, self.write_meta(idempotency_key), idempotency_key)
        )
        return result

    async def send(
        self, stream: str, group: str, type: str, data: Any, *, id: str | None = None
    ) -> SendResult:
        """Append a stream message (kind ``stream``): logged so stream clients can resume; changes no state."""
        validate_name("stream", stream, 256, allow_slash=False)
        identity = current_identity.get()
        if identity is not None:
            identity.require_write_stream(stream)
        validate_name("group", group, 1024, allow_slash=True)
        validate_name("type", type, 256, allow_slash=True)
        if id is not None:
            validate_name("id", id, 1024, allow_slash=True)
        raw = encode_data(data, self.max_value_bytes)
        result: SendResult = await self._submit(
            CommandJob(Send(stream, group, type, data, id), raw, self.write_meta(), None)
        )
        return result

    # -- reads

    def _check_at(self, at: int | None) -> int | None:
        if at is None:
            return None
        _check_offset("at", at)
        if at > self.head:
            raise ValidationError(
                f"at={at} is beyond the head ({self.head})", detail={"at": at, "head": self.head}
            )
        self.check_read(at, "at")
        return at

    def check_read(self, position: int, name: str = "after", kind: KindFilter = "state") -> None:
        """Refuse a position the log no longer holds: below ``earliest - 1`` (``offset_out_of_range`` with
        ``earliest``). Call it before a read and again after it: the floor moves before a compaction commits, so a
        read that may have missed removed events always sees the new floor afterwards."""
        earliest = self._floor.for_kind(kind)
        if position < earliest - 1:
            raise OffsetOutOfRangeError(
                f"{name}={position} is older than the earliest offset kept ({earliest}); the log before it was "
                "compacted",
                detail={name: position, "earliest": earliest, "head": self.head},
            )

    async def entry(self, scope: str, key: str, *, at: int | None = None) -> Entry | None:
        """A key's value with its version and last offset (as of offset ``at``), or ``None``."""
        self.check_open()
        validate_scope(scope)
        validate_key(key)
        identity = current_identity.get()
        if identity is not None:
            identity.require_read(scope)  # before any read: a forbidden key and a missing key look the same
        at = self._check_at(at)
        found = await (self.reader.entry(scope, key) if at is None else self.reader.entry_at(scope, key, at))
        if at is not None:
            self.check_read(at, "at")
        if found is not None and found.offset > self.head:
            # Committed by the writer thread but not yet acknowledged on the loop: never hand out an offset beyond
            # the head (a client could not subscribe after it yet).
            await self.writer.wait_for_head(found.offset)
        return found

    async def get(self, scope: str, key: str, *, at: int | None = None) -> Any:
        """A key's value (as of offset ``at``), or ``None`` when missing."""
        found = await self.entry(scope, key, at=at)
        return None if found is None else found.value

    async def list(
        self, scope: str, *, limit: int = 100, cursor: str | None = None, at: int | None = None
    ) -> Page:
        """Entries of a scope in first-insertion order, ``limit`` at a time; pass ``next_cursor`` back for more."""
        self.check_open()
        validate_scope(scope)
        identity = current_identity.get()
        if identity is not None:
            identity.require_read(scope)
        _check_offset("limit", limit, minimum=1)
        if limit > MAX_LIST_LIMIT:
            raise ValidationError(
                f"limit must be at most {MAX_LIST_LIMIT}, got {limit}", detail={"limit": limit}
            )
        at = self._check_at(at)
        page = await self.reader.list(scope, limit=limit, cursor=cursor, at=at)
        if at is not None:
            self.check_read(at, "at")
        newest = max((item.offset for item in page.items), default=0)
        if newest > self.head:
            await self.writer.wait_for_head(newest)  # as in entry(): no offset beyond the head
        return page

    async def list_groups(self) -> Groups:
        """``Groups{groups}``: the scopes that hold at least one key, sorted (those the identity may read)."""
        self.check_open()
        groups = await self.reader.list_groups()
        identity = current_identity.get()
        if identity is not None and not identity.admin:
            groups = [g for g in groups if identity.may_read(g)]
        return Groups(groups)

    async def read_events(
        self,
        after: int = 0,
        limit: int = 1000,
        *,
        scopes: Sequence[str] | None = None,
        keys: Sequence[str] | None = None,
        kind: KindFilter = "all",
    ) -> builtins.list[Event]:
        """One page of the log: events with offset > ``after``, in offset order."""
        self.check_open()
        _check_offset("after", after)
        _check_offset("limit", limit, minimum=1)
        if limit > MAX_EVENTS_LIMIT:
            raise ValidationError(f"limit must be at most {MAX_EVENTS_LIMIT}, got {limit}")
        if kind not in ("state", "stream", "all"):
            raise ValidationError(f"kind must be 'state', 'stream' or 'all', not {kind!r}")
        for s in scopes or ():
            validate_scope(s)
        for k in keys or ():
            validate_key(k)
        f = Filter.of(kind, scopes, keys)
        identity = current_identity.get()
        if identity is not None:
            identity.require_follow(f)  # without admin: only named scopes it may read
        await self.catch_up_to(after)
        head = self.head
        check_after_range(after, earliest=self._floor.for_kind(kind), head=head)
        events = await self.reader.read_events(f, after, limit, upto=head)
        self.check_read(after, "after", kind)  # a compaction that committed while we read
        return events

    async def earliest(self) -> int:
        """The first offset still in the log (1 until a compaction moves it; no I/O)."""
        self.check_open()
        return self._floor.earliest

    @property
    def log_floor(self) -> Floor:
        """``earliest`` and ``stream_earliest``: the first offsets kept (no I/O)."""
        return self._floor

    def _read_floor(self) -> Floor:
        conn = connect_reader(self.path)
        try:
            return retention.read_floor(conn)
        finally:
            conn.close()

    # -- retention (ripple.store.retention): compaction through the writer queue, in bounded steps

    async def compact(
        self, before: int | None = None, *, streams_before: int | None = None, force: bool = False,
        hold: bool = False, reclaim: bool = True,
    ) -> CompactResult:
        """Remove the events below offset ``before`` after folding them into the base snapshot (and stream events
        below ``streams_before``), in steps of ``retention.COMPACT_CHUNK`` events merged into group commits.

        Refused (:class:`ConflictError` ``floor_blocked``, nothing changed) when a durable reaction or a projection
        still needs those events, unless ``force`` (forced projections are rebuilt from the base, forced reactions
        skip what was removed) or ``hold`` (the floor stops below what they still need, as retention policies do).
        ``reclaim`` then gives the freed pages back to the file system in steps.
        """
        self.check_open()
        self.refuse_on_postgres("compaction")
        async with self.maintenance:
            started, start = time.perf_counter(), self._floor
            await self.reactions.save_positions()  # an idle reaction does not need what it has passed
            before, streams_before, found = await self.commits.run_in_txn(
                functools.partial(self._plan, before, streams_before, hold)
            )
            if found and not force:
                raise ConflictError(
                    retention.refuse_message(min(x for x in (before, streams_before) if x is not None), found),
                    code="floor_blocked",
                    detail={"blockers": [msgspec.to_builtins(b) for b in found]},
                )
            for blocker in found:
                log.warning("compacting past %s: forced", blocker.describe())
            removed = 0
            while before is not None and self._floor.earliest < before:
                removed += await self._step(retention.compact_step, before)
            while streams_before is not None and self._floor.stream_earliest < streams_before:
                removed += await self._step(retention.trim_streams_step, streams_before)
        rebuild = [b.name for b in found if b.kind == "projection" and b.name in self.projections]
        if rebuild:
            self.spawn(self.projections.rebuild_many(rebuild), name="ripple-rebuild-after-compaction")
        if reclaim and removed:
            await self.reclaim_space()
        self._checkpoint_due.set()
        return CompactResult(start.earliest, self._floor.earliest, self._floor.stream_earliest, removed,
                             time.perf_counter() - started, found)

    def _plan(self, before: int | None, streams_before: int | None, hold: bool, txn: WriteTxn
              ) -> tuple[int | None, int | None, builtins.list[Blocker]]:
        """In a writer transaction (cursors advance through the writer, so this view is current): check the floors
        and find what they would cut off; with ``hold``, lower them below it instead."""
        floor = retention.read_floor(txn.conn)
        found: builtins.list[Blocker] = []
        if before is not None:
            retention.check_before(txn.conn, before, "before")
            blocking = retention.blockers(txn.conn, before)
            if hold and blocking:
                before = self._held(before, blocking, floor.earliest)
                blocking = []
            found += blocking
        if streams_before is not None:
            retention.check_before(txn.conn, streams_before, "streams_before")
            # only followers of stream events lose input when streams are trimmed
            readers = {p.name for p in self.projections if p.kind != "state"}
            blocking = [b for b in retention.blockers(txn.conn, streams_before)
                        if b.kind == "projection" and b.name in readers and b not in found]
            if hold and blocking:
                streams_before = self._held(streams_before, blocking, floor.stream_earliest)
                blocking = []
            found += blocking
        return before, streams_before, found

    @staticmethod
    def _held(wanted: int, blocking: builtins.list[Blocker], current: int) -> int | None:
        safe = min(b.position for b in blocking) + 1
        log.warning("retention: holding a floor at %d (wanted %d) until %s catch%s up", safe, wanted,
                    ", ".join(b.describe() for b in blocking[:5]), "es" if len(blocking) == 1 else "")
        return safe if safe > current else None

    async def _step(self, step: Callable[..., tuple[Floor, int]], before: int) -> int:
        def run(txn: WriteTxn) -> tuple[int, float]:
            started = time.perf_counter()
            floor, removed = step(txn.conn, before)
            self._floor = floor  # announced before COMMIT (see check_read)
            return removed, time.perf_counter() - started

        try:
            removed, seconds = await self.commits.run_in_txn(run)
        except BaseException:
            self._floor = await asyncio.to_thread(self._read_floor)  # the step rolled back
            raise
        await self._pace(seconds + await self._checkpoint_in_writer())
        return removed

    async def _checkpoint_in_writer(self) -> float:
        """Checkpoint from the writer's own connection, between two groups; returns the seconds it took.

        A compaction step dirties pages all over the file (its events' index entries are spread over every key), about
        10 KB of WAL per event removed. The background checkpointer never completes while writes interleave, so the
        WAL would only grow (2.7 GB for 270k events in bench/compact.py); checkpointed here, with no write in between,
        it is backfilled whole and restarts at the next write (it stayed under 50 MB).
        """
        def checkpoint(conn: sqlite3.Connection) -> float:
            started = time.perf_counter()
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            return time.perf_counter() - started

        seconds: float = await self.writer.call(checkpoint)
        return seconds

    @staticmethod
    async def _pace(step_seconds: float) -> None:
        """Leave the writer to the writes for ``retention.PACE`` times as long as a maintenance step held it."""
        await asyncio.sleep(step_seconds * retention.PACE)  # sleep-ok: pacing background work, not synchronisation

    async def reclaim_space(self) -> int:
        """Give free pages back to the file system, ``retention.VACUUM_CHUNK`` pages per writer transaction (paced
        like compaction); returns the pages given back (0 for a file without incremental auto-vacuum: run
        ``ripple compact`` offline once)."""
        self.refuse_on_postgres("reclaiming space")
        given = 0

        def vacuum(txn: WriteTxn) -> tuple[int, int, float]:
            started = time.perf_counter()
            before = retention.free_pages(txn.conn)
            return before, retention.vacuum_step(txn.conn), time.perf_counter() - started

        while True:
            before, left, seconds = await self.commits.run_in_txn(vacuum)
            given += max(0, before - left)
            if left == 0 or left >= before:
                await self._checkpoint_in_writer()  # the file shrinks when the WAL is checkpointed
                return given
            await self._pace(seconds)

    async def apply_retention(self, policy: RetentionPolicy, now_ms: int | None = None) -> CompactResult | None:
        """One run of ``policy``: compact as far as it asks, but never past a durable reaction or projection (the
        floor waits for them, and the log says which one holds it back). ``None``: nothing to do."""
        self.refuse_on_postgres("retention")
        wanted = await asyncio.to_thread(self._retention_targets, policy, now_ms)
        if wanted.before is None and wanted.streams_before is None:
            return None
        result = await self.compact(wanted.before, streams_before=wanted.streams_before, hold=True)
        return result if result.removed or result.earliest != result.earliest_before else None

    def _retention_targets(self, policy: RetentionPolicy, now_ms: int | None) -> retention.Targets:
        conn = connect_reader(self.path)
        try:
            return retention.targets(conn, policy, now_ms)
        finally:
            conn.close()

    async def _retention_loop(self, policy: RetentionPolicy) -> None:
        while True:
            try:
                result = await self.apply_retention(policy)
                if result is not None:
                    log.info("retention: earliest %d -> %d (%d events removed in %.1fs)", result.earliest_before,
                             result.earliest, result.removed, result.seconds)
            except RippleError as exc:
                log.warning("retention run failed: %s", exc.message)
            except Exception:
                log.exception("retention run failed")
            await asyncio.sleep(policy.interval)  # sleep-ok: a periodic policy, not synchronisation

    # -- reactions and projections (DESIGN §5-6)

    @overload
    def on_change(
        self,
        scope: str,
        handler: None = None,
        *,
        key: str | None = None,
        condition: Callable[[ChangeEvent], Any] | None = None,
        name: str | None = None,
        start: Start | None = None,
    ) -> Callable[[H], H]: ...

    @overload
    def on_change(
        self,
        scope: str,
        handler: H,
        *,
        key: str | None = None,
        condition: Callable[[ChangeEvent], Any] | None = None,
        name: str | None = None,
        start: Start | None = None,
    ) -> H: ...

    def on_change(
        self,
        scope: str,
        handler: H | None = None,
        *,
        key: str | None = None,
        condition: Callable[[ChangeEvent], Any] | None = None,
        name: str | None = None,
        start: Start | None = None,
    ) -> H | Callable[[H], H]:
        """Register a reaction to changes of ``scope`` (``@store.on_change("todos")`` or a call with ``handler``).

        With ``name`` (and ``start="beginning" | "head"``) it is durable: ``handler(event, writes)``, resumed from its
        cursor after a restart; staged writes commit exactly once with the cursor advance. See :mod:`ripple.reactions`.
        """
        return self.reactions.on_change(scope, handler, key=key, condition=condition, name=name, start=start)

    def register_projection(self, projection: Projection) -> Projection:
        """Add a projection; on an open store its tables are created (or caught up, or rebuilt) in the background."""
        return self.projections.register(projection)

    async def projection(self, name: str) -> ProjectionState:
        """A projection's data and checkpoint; :class:`ProjectionRebuildingError` while a new version is built."""
        require_admin(f"read projection {name!r}")
        return await self.projections.state(name)

    async def rebuild(self, name: str) -> ProjectionState:
        """Rebuild a projection from offset 0 into new tables while writes go on, then swap them in atomically."""
        self.check_open()
        require_admin(f"rebuild projection {name!r}")
        return await self.projections.rebuild(name)

    # -- subscriptions (DESIGN §7)

    def subscribe(
        self,
        *,
        scopes: Sequence[str] | None = None,
        keys: Sequence[str] | None = None,
        kind: KindFilter = "state",
        after: int | None = None,
        snapshot: bool = False,
        batch: int | None = None,
        limits: Limits | None = None,
    ) -> Subscription:
        """Every matching event after ``after`` exactly once, in offset order, then live (DESIGN §7).

        ``async with store.subscribe(scopes=["todos"], after=0) as sub: async for event in sub: ...``;
        ``after=None`` starts at the head; ``snapshot=True`` fills ``sub.snapshot`` first; ``sub.batches()`` yields
        lists of up to ``batch`` events.
        """
        self.check_open()
        identity = current_identity.get()
        if identity is not None:
            identity.require_follow(Filter.of(kind, scopes, keys))
        return Subscription(
            self, scopes=scopes, keys=keys, kind=kind, after=after, snapshot=snapshot, batch=batch, limits=limits
        )
