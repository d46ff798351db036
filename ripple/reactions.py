"""Reactions (state triggers, DESIGN §5): functions that run after commit when a scope changes.

Each reaction has its own task and follows the log with its own
:class:`~ripple.subscriptions.follower.Follower` (a bounded live buffer): a slow or failing reaction blocks no write
and no other reaction, and an overflowing one reads the log instead of dropping.

- **Ephemeral** (no ``name``): live events only, from the moment the store is open or the reaction is registered;
  ``handler(event)``; writes go through the store like any caller's.
- **Durable** (``name`` and ``start="beginning" | "head"``): a cursor in the ``reactions`` table, set when the
  reaction is registered (``"head"``: every event committed after ``on_change`` returned); after a restart or a
  crash the reaction resumes after its cursor, in offset order. ``handler(event, writes)``: ``writes`` stages
  ``set``/``update``/``delete``; when the handler returns, the staged writes and the cursor advance commit in one
  transaction through the writer queue (merged into group commits). So a durable reaction's *writes* apply exactly
  once; its *external* effects (an e-mail, an HTTP call) are at-least-once: after a crash between the effect and the
  commit, the handler runs again for that event.

Every write made while a handler runs carries ``meta.cause`` (the triggering offset) and ``meta.depth`` (the cause's
depth + 1); a write deeper than ``store.cascade_limit`` is refused with :class:`~ripple.errors.CascadeLimitError`,
logged at ERROR and counted, so a reaction that writes its own scope cannot loop forever.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import msgspec

from ripple.core.events import Delete, Event, Meta, Set, StateCommand, Update
from ripple.core.filter import Filter
from ripple.core.ops import UpdateOp
from ripple.core.validate import validate_key, validate_name, validate_scope
from ripple.errors import RegistrationError, RippleError, StoreClosedError
from ripple.store.origin import current_origin
from ripple.store.postgres import LeaseLost, run_leased
from ripple.store.writer import WriteTxn
from ripple.subscriptions.cursor import DEFAULT_MAX_BUFFER_EVENTS, Limits
from ripple.subscriptions.follower import Follower

if TYPE_CHECKING:
    from ripple.store.store import Store

log = logging.getLogger("ripple.reactions")

H = TypeVar("H", bound=Callable[..., Any])
Start = Literal["beginning", "head"]
BATCH = 256
RETRY_DELAYS = (0.05, 0.2, 1.0, 5.0)


class ChangeEvent(msgspec.Struct, frozen=True):
    """What a reaction receives: iii's state trigger payload plus the event's offset (DESIGN §5)."""

    type: Literal["state"]
    event_type: str  # "state:created" | "state:updated" | "state:deleted"
    scope: str
    key: str
    old_value: Any
    new_value: Any
    offset: int


def change_event(event: Event) -> ChangeEvent:
    return ChangeEvent(
        "state", f"state:{event.event_type}", event.scope, event.key, event.old_value, event.new_value, event.offset
    )


def origin_of(event: Event) -> Meta:
    """The meta of writes caused by ``event``."""
    return Meta(cause=event.offset, depth=(event.meta.depth or 0) + 1)


class Writes:
    """Commands a durable reaction's handler stages; they commit with its cursor advance when the handler returns.

    Each call validates at once (a bad command raises here, in the handler) and returns nothing.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self.staged: list[tuple[StateCommand, bytes | None]] = []

    def _stage(self, cmd: StateCommand) -> None:
        self._store.write_meta()  # the cascade check: raises CascadeLimitError (logged and counted) when too deep
        self.staged.append(self._store.prepare(cmd))

    def set(self, scope: str, key: str, value: Any, *, expected_offset: int | None = None) -> None:
        self._stage(Set(scope, key, value, expected_offset))

    def update(
        self, scope: str, key: str, ops: Sequence[UpdateOp | dict[str, Any]], *, expected_offset: int | None = None
    ) -> None:
        from ripple.store.store import parse_ops

        self._stage(Update(scope, key, parse_ops(list(ops)), expected_offset))

    def delete(self, scope: str, key: str, *, expected_offset: int | None = None) -> None:
        self._stage(Delete(scope, key, expected_offset))


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Await an async function; run a sync one in a worker thread (it sees the caller's contextvars)."""
    if _is_async(fn):
        return await fn(*args)
    result = await asyncio.to_thread(fn, *args)
    if inspect.isawaitable(result):
        result = await result
    return result


class Reaction:
    """One registered reaction and its running state."""

    def __init__(
        self,
        handler: Callable[..., Any],
        scope: str,
        key: str | None,
        condition: Callable[[ChangeEvent], Any] | None,
        name: str | None,
        start: Start | None,
        capacity: int,
    ) -> None:
        self.handler = handler
        self.scope = scope
        self.key = key
        self.condition = condition
        self.name = name
        self.start = start
        self.capacity = capacity
        self.label = name or getattr(handler, "__qualname__", repr(handler))
        self.follower: Follower | None = None
        self.task: asyncio.Task[Any] | None = None
        self.through = 0  # every matching event <= through was handled
        self.busy = False
        self.handled = 0
        self.failures = 0

    @property
    def durable(self) -> bool:
        return self.name is not None

    @property
    def idle(self) -> bool:
        return self.follower is not None and self.follower.idle and not self.busy


class Reactions:
    """The store's reaction registry (``store.reactions``); ``store.on_change`` registers here."""

    def __init__(self, store: Store, *, enabled: bool = True) -> None:
        self.store = store
        self.enabled = enabled  # False: registrations are accepted but never run (the offline tool)
        self.capacity = DEFAULT_MAX_BUFFER_EVENTS
        self._all: list[Reaction] = []
        self._names: set[str] = set()
        self._started = False
        self._progress = asyncio.Event()
        store.counters.setdefault("reaction_failures", 0)
        store.counters.setdefault("reaction_overflows", 0)

    def __iter__(self) -> Any:
        return iter(list(self._all))

    def get(self, name_or_handler: str | Callable[..., Any]) -> Reaction:
        for r in self._all:
            if r.name == name_or_handler or r.handler is name_or_handler:
                return r
        raise KeyError(name_or_handler)

    # -- registration

    def on_change(
        self,
        scope: str,
        handler: H | None = None,
        *,
        key: str | None = None,
        condition: Callable[[ChangeEvent], Any] | None = None,
        name: str | None = None,
        start: Start | None = None,
        capacity: int | None = None,
    ) -> H | Callable[[H], H]:
        """Register ``handler`` for changes of ``scope``; without ``handler``, return a decorator."""
        self._check(scope, key, condition, name, start)
        if handler is None:

            def decorator(fn: H) -> H:
                self._add(fn, scope, key, condition, name, start, capacity)
                return fn

            return decorator
        self._add(handler, scope, key, condition, name, start, capacity)
        return handler

    def _check(
        self, scope: object, key: object, condition: object, name: object, start: object
    ) -> None:
        try:
            validate_scope(scope)
            if key is not None:
                validate_key(key)
            if name is not None:
                validate_name("reaction name", name, 256, allow_slash=True)
        except RippleError as exc:
            raise RegistrationError(f"cannot register the reaction: {exc.message}", detail=exc.detail) from None
        if condition is not None and not callable(condition):
            raise RegistrationError(f"condition must be callable, not {type(condition).__name__}")
        if name is not None and name in self._names:
            raise RegistrationError(f"a reaction named {name!r} is already registered", detail={"name": name})
        if name is None and start is not None:
            raise RegistrationError("start= applies only to durable reactions: give the reaction a name")
        if name is not None and start not in ("beginning", "head"):
            raise RegistrationError(
                f"durable reaction {name!r} needs start='beginning' or start='head', not {start!r}: 'beginning' "
                "handles the whole log the first time, 'head' only what is written after it is registered",
                detail={"name": name, "start": start},
            )
        if self.store.closed:
            raise StoreClosedError("the store is closed")

    def _add(
        self,
        handler: Callable[..., Any],
        scope: str,
        key: str | None,
        condition: Callable[[ChangeEvent], Any] | None,
        name: str | None,
        start: Start | None,
        capacity: int | None,
    ) -> Reaction:
        if not callable(handler):
            raise RegistrationError(f"a reaction handler must be callable, not {type(handler).__name__}")
        if name is not None and name in self._names:  # checked again: a decorator may be applied late
            raise RegistrationError(f"a reaction named {name!r} is already registered", detail={"name": name})
        if capacity is not None and capacity < 1:
            raise RegistrationError(f"capacity must be >= 1, got {capacity}")
        reaction = Reaction(handler, scope, key, condition, name, start, capacity or self.capacity)
        self._all.append(reaction)
        if name is not None:
            self._names.add(name)
        if self._started:
            self._launch(reaction)
        return reaction

    # -- lifecycle

    def start(self) -> None:
        """Called by the store once open: start every registered reaction (and later ones at registration)."""
        self._started = True
        for reaction in self._all:
            self._launch(reaction)
        if self.enabled:
            self.store.on_close(self.save_positions)

    async def save_positions(self) -> None:
        """Move the stored cursor of every idle durable reaction up to where it stands now.

        A durable cursor advances with the batches a reaction handles, so one whose scope stays quiet keeps an old
        cursor while the log grows: after a restart it would read those events again only to skip them, and a
        compaction would count it as still needing them. Idle, it has handled every matching event up to the head.
        """
        moves = [(r.follower.cursor.current_through(self.store.head), r) for r in self._all
                 if r.durable and r.idle and r.follower is not None]
        moves = [(through, r) for through, r in moves if through > r.through]
        if not moves:
            return
        rows = [(through, r.name, through) for through, r in moves]

        def advance(txn: WriteTxn) -> None:
            txn.conn.executemany("UPDATE reactions SET cursor = ? WHERE name = ? AND cursor < ?", rows)

        try:
            await self.store.commits.run_in_txn(advance)
        except StoreClosedError:
            return
        for through, reaction in moves:
            reaction.through = max(reaction.through, through)

    def _launch(self, reaction: Reaction) -> None:
        if not self.enabled or reaction.task is not None:
            return
        label = f"ripple-reaction:{reaction.label}"
        if reaction.durable:
            # The cursor is set now, not when the task first runs: "head" means every event committed after the
            # registering call returned. Queued before any later write, so it is durable before they are.
            cursor = self._init_cursor(reaction, self.store.head)
            if self.store.shared_log:  # several nodes: one runs it at a time (ripple.store.postgres.Lease)
                reaction.task = self.store.spawn(
                    run_leased(self.store.path, f"reaction:{reaction.name}",
                               functools.partial(self._run_durable_leased, reaction, cursor)), name=label)
            else:
                reaction.task = self.store.spawn(self._run_durable(reaction, cursor), name=label)
        else:
            reaction.through = self.store.head
            reaction.follower = self._follower(reaction, reaction.through)
            reaction.task = self.store.spawn(self._run_ephemeral(reaction), name=label)

    def _follower(self, reaction: Reaction, after: int) -> Follower:
        def overflow() -> None:
            log.warning("reaction %s fell behind; reading the log from offset %d", reaction.label, follower.through,
                        extra={"event": "overflow", "kind": "reaction", "reaction": reaction.label,
                               "through": follower.through})

        def gap(error: RippleError) -> bool:
            # only a forced compaction (or a retention policy run by hand past its cursor) gets here
            log.error("reaction %s: events after offset %d were compacted before it handled them; it goes on from "
                      "the floor (%s)", reaction.label, follower.through, error.message)
            return True

        follower = Follower(
            self.store,
            Filter.of("state", [reaction.scope], None if reaction.key is None else [reaction.key]),
            after,
            limits=Limits(max_buffer_events=reaction.capacity, max_buffer_bytes=None),
            overflow_counter="reaction_overflows",
            on_overflow=overflow,
            on_idle=self._notify,
            on_gap=gap,
        )
        return follower.attach()

    async def wait_idle(self, *which: str | Callable[..., Any]) -> None:
        """Wait until the given reactions (default: all running ones) have handled every committed event.

        Bound it with ``asyncio.wait_for``.
        """
        targets = [self.get(w) for w in which] if which else [r for r in self._all if r.task is not None]
        while True:
            self._progress.clear()
            if all(r.idle or (r.task is not None and r.task.done()) for r in targets):
                return
            await self._progress.wait()

    def _notify(self) -> None:
        self._progress.set()

    # -- running

    async def _accepts(self, reaction: Reaction, change: ChangeEvent) -> bool:
        if reaction.condition is None:
            return True
        try:
            return bool(await call(reaction.condition, change))
        except Exception:
            self._failed(reaction, change.offset, "its condition raised")
            return False

    def _failed(self, reaction: Reaction, offset: int, what: str) -> None:
        reaction.failures += 1
        self.store.counters["reaction_failures"] += 1
        log.exception("reaction %s failed at offset %d: %s", reaction.label, offset, what,
                      extra={"event": "reaction_failure", "reaction": reaction.label, "offset": offset})

    async def _run_ephemeral(self, reaction: Reaction) -> None:
        follower = reaction.follower
        assert follower is not None
        try:
            while True:
                self._notify()
                batch = await follower.next(BATCH)
                reaction.busy = True
                for event in batch:
                    change = change_event(event)
                    if not await self._accepts(reaction, change):
                        continue
                    token = current_origin.set(origin_of(event))
                    try:
                        await call(reaction.handler, change)
                    except Exception:
                        self._failed(reaction, event.offset, "the handler raised")
                    finally:
                        current_origin.reset(token)
                    reaction.handled += 1
                reaction.through = follower.through
                reaction.busy = False
        except StoreClosedError:
            return
        finally:
            follower.detach()

    async def _run_durable(self, reaction: Reaction, cursor: asyncio.Future[int]) -> None:
        try:
            reaction.through = await cursor
        except StoreClosedError:
            return
        follower = reaction.follower = self._follower(reaction, reaction.through)
        try:
            while True:
                self._notify()
                batch = await follower.next(BATCH)
                reaction.busy = True
                staged: list[tuple[int, Meta, list[tuple[StateCommand, bytes | None]]]] = []
                for event in batch:
                    change = change_event(event)
                    if not await self._accepts(reaction, change):
                        continue
                    meta = origin_of(event)
                    writes = Writes(self.store)
                    token = current_origin.set(meta)
                    try:
                        await call(reaction.handler, change, writes)
                        staged.append((event.offset, meta, writes.staged))
                    except Exception:
                        self._failed(reaction, event.offset, "the handler raised (its staged writes are dropped)")
                    finally:
                        current_origin.reset(token)
                    reaction.handled += 1
                through = follower.through
                if not await self._commit(reaction, staged, through):
                    return
                reaction.through = through
                reaction.busy = False
        except StoreClosedError:
            return
        finally:
            follower.detach()

    async def _run_durable_leased(self, reaction: Reaction, init: asyncio.Future[int]) -> None:
        """A lease was taken: resume from the cursor in the database (the previous holder may have moved it)."""
        try:
            await init
        except StoreClosedError:
            return
        name = reaction.name

        def read(txn: WriteTxn) -> int:
            return int(txn.conn.execute("SELECT cursor FROM reactions WHERE name = ?", (name,)).fetchone()[0])

        try:
            await self._run_durable(reaction, self.store.commits.run_in_txn(read))
        finally:
            # Not running here any more: save_positions must not move a cursor another node now advances.
            reaction.follower = None
            reaction.busy = False

    def _init_cursor(self, reaction: Reaction, head: int) -> asyncio.Future[int]:
        """Queue the read (or creation) of a durable reaction's cursor; ``start="head"`` starts at ``head``."""
        name = reaction.name
        start = 0 if reaction.start == "beginning" else head

        def init(txn: WriteTxn) -> int:
            row = txn.conn.execute("SELECT cursor FROM reactions WHERE name = ?", (name,)).fetchone()
            if row is not None:
                return int(row[0])
            txn.conn.execute("INSERT INTO reactions (name, cursor) VALUES (?, ?)", (name, start))
            return start

        future = self.store.commits.run_in_txn(init)
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # the task may be gone before it reads it
        return future

    async def _commit(
        self,
        reaction: Reaction,
        staged: list[tuple[int, Meta, list[tuple[StateCommand, bytes | None]]]],
        through: int,
    ) -> bool:
        """Commit the staged writes with the cursor advance; retry on storage errors. False: the store closed."""
        name = reaction.name
        rejected: list[tuple[int, RippleError]] = []
        fenced = self.store.shared_log
        lost = False

        def commit(txn: WriteTxn) -> None:
            nonlocal lost
            rejected.clear()
            if fenced:  # another node moved the cursor: this one's lease is gone, write nothing
                row = txn.conn.execute("SELECT cursor FROM reactions WHERE name = ?", (name,)).fetchone()
                if row is not None and int(row[0]) > reaction.through:
                    lost = True
                    return
            for offset, meta, cmds in staged:
                try:
                    with txn.savepoint():  # one event's writes are all-or-nothing, like a batch
                        for cmd, raw in cmds:
                            txn.apply(cmd, raw, meta)
                except RippleError as exc:
                    rejected.append((offset, exc))
            txn.conn.execute(
                "UPDATE reactions SET cursor = ? WHERE name = ? AND cursor < ?", (through, name, through)
            )

        for attempt in itertools.count():
            try:
                await self.store.commits.run_in_txn(commit)
                break
            except StoreClosedError:
                return False
            except RippleError as exc:
                delay = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                log.error(
                    "reaction %s: could not commit its cursor %d (%s); retrying in %.2fs",
                    reaction.label, through, exc, delay,
                )
                await asyncio.sleep(delay)
        if lost:
            raise LeaseLost(f"reaction {reaction.label}: another node moved its cursor past {reaction.through}")
        for offset, error in rejected:
            reaction.failures += 1
            self.store.counters["reaction_failures"] += 1
            log.error(
                "reaction %s failed at offset %d: its staged writes were rejected: %s", reaction.label, offset, error,
                extra={"event": "reaction_failure", "reaction": reaction.label, "offset": offset, "code": error.code},
            )
        return True
