"""The commit bus: the one way for the rest of ripple to take part in group commits (``store.commits``).

Three hooks, all owned by the writer and nothing else:

- :meth:`CommitBus.subscribe` — a *listener* is called on the event loop after each COMMIT with the committed events,
  in offset order, after ``head`` advanced and before the callers are acknowledged ("acknowledge last", DESIGN §13).
  It must not block or await: the hub, the long-poll wake-up and the checkpointer only queue or set flags here.
- :meth:`CommitBus.add_txn_hook` — a *transaction hook* runs in the writer thread inside the group's transaction,
  after the group's events are written and before COMMIT (inline projections fold there: exactly-once).
- :meth:`CommitBus.run_in_txn` — a one-off function run in the writer thread inside the next group commit, in a
  SAVEPOINT (reaction cursor advances with their staged writes, async projection statements with their checkpoint).

Listeners and hooks are kept in tuples that are replaced, never mutated, so the writer thread can read them while the
loop adds or removes one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from ripple.core.events import Event

if TYPE_CHECKING:
    from ripple.store.writer import Writer, WriteTxn

log = logging.getLogger("ripple.commits")
T = TypeVar("T")

CommitListener = Callable[[list[Event]], None]
TxnHook = Callable[["WriteTxn", list[Event]], None]
Unsubscribe = Callable[[], None]


class CommitBus:
    """Listeners after COMMIT, hooks inside the transaction, and jobs merged into group commits."""

    def __init__(self) -> None:
        self._listeners: tuple[CommitListener, ...] = ()
        self._hooks: tuple[TxnHook, ...] = ()
        self._writer: Writer | None = None

    def bind(self, writer: Writer) -> None:
        """Called once by the writer that owns this bus."""
        self._writer = writer

    # -- for the rest of ripple

    def subscribe(self, listener: CommitListener) -> Unsubscribe:
        """Call ``listener(events)`` after each COMMIT (on the loop, before acks). Returns the unsubscribe function."""
        self._listeners = (*self._listeners, listener)

        def unsubscribe() -> None:
            self._listeners = tuple(x for x in self._listeners if x is not listener)

        return unsubscribe

    def add_txn_hook(self, hook: TxnHook) -> Unsubscribe:
        """Call ``hook(txn, events)`` in the writer thread inside every transaction that appends events."""
        self._hooks = (*self._hooks, hook)

        def remove() -> None:
            self._hooks = tuple(x for x in self._hooks if x is not hook)

        return remove

    def run_in_txn(self, fn: Callable[[WriteTxn], T]) -> asyncio.Future[T]:
        """Queue ``fn(txn)`` now, to run inside the next group commit (in a SAVEPOINT); await the result, which is
        set once committed. Queued in call order with every other write (raises ``StoreClosedError`` or
        ``OverloadedError`` at once)."""
        assert self._writer is not None, "the commit bus is not bound to a writer"
        from ripple.store.writer import TxnJob  # the writer imports this module

        future: asyncio.Future[T] = self._writer.submit(TxnJob(fn))
        return future

    @property
    def head(self) -> int:
        """The last acknowledged offset."""
        return 0 if self._writer is None else self._writer.head

    async def wait_for_head(self, offset: int) -> None:
        """Return once the acknowledged head reaches ``offset``."""
        if self._writer is not None:
            await self._writer.wait_for_head(offset)

    # -- for the writer

    def run_txn_hooks(self, txn: WriteTxn, events: list[Event]) -> None:
        for hook in self._hooks:
            hook(txn, events)

    def publish(self, events: list[Event]) -> None:
        for listener in self._listeners:
            try:
                listener(events)
            except Exception:
                log.exception("commit listener %r failed", listener)
