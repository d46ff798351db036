"""The async driver of a :class:`~ripple.subscriptions.cursor.Cursor` for readers that want :class:`Event` objects.

Reactions, async projections, the iii trigger pump and stream server and the embedded subscription all read the log
through a :class:`Follower`: ``await follower.next(limit)`` returns the next matching events after ``through``, read
from the log while behind and taken from the hub's live buffer once caught up, exactly once and in offset order. A
consumer slower than the writer overflows its bounded buffer and silently falls back to the log: it sees latency,
never loss or duplicates, and the writer never waits for it. (The WebSocket session drives its cursor itself, to send
the stored JSON bytes without decoding them.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from ripple.core.events import Event
from ripple.core.filter import Filter
from ripple.errors import OffsetOutOfRangeError, StoreClosedError
from ripple.store.sqlite import rows_to_events
from ripple.subscriptions.catchup import read_page
from ripple.subscriptions.cursor import Cursor, Limits

if TYPE_CHECKING:
    from ripple.store.store import Store


class Follower:
    """Every event ``filter`` matches after ``after``, exactly once, in offset order. :meth:`attach` before reading."""

    def __init__(
        self,
        store: Store,
        filter: Filter,
        after: int,
        *,
        limits: Limits | None = None,
        overflow_counter: str = "subscriber_overflows",
        on_overflow: Callable[[], None] | None = None,
        on_idle: Callable[[], None] | None = None,
        on_gap: Callable[[OffsetOutOfRangeError], bool] | None = None,
    ) -> None:
        self._store = store
        self._on_idle = on_idle
        self._on_gap = on_gap
        self._waiter: asyncio.Future[None] | None = None
        self._attached = False
        self.cursor = Cursor(
            filter,
            after,
            limits or store.hub.settings.limits,
            counters=store.counters,
            wake=self._wake,
            overflow_counter=overflow_counter,
            on_overflow=on_overflow,
        )

    def attach(self) -> Follower:
        """Start taking live events (nothing committed from here on can be missed). Idempotent."""
        if not self._attached:
            self._store.hub.attach(self.cursor)
            self._attached = True
        return self

    def detach(self) -> None:
        if self._attached:
            self._store.hub.detach(self.cursor)
            self._attached = False
        self._wake()

    @property
    def through(self) -> int:
        """Every matching event up to this offset was returned by :meth:`next`."""
        return self.cursor.through

    @property
    def idle(self) -> bool:
        """Every matching event committed so far was returned."""
        return self.cursor.idle

    async def next(self, limit: int) -> list[Event]:
        """The next 1 to ``limit`` matching events; waits for one. Raises :class:`StoreClosedError` on close."""
        cursor, store = self.cursor, self._store
        while True:
            if store.closed or store.hub.closed or not self._attached:
                raise StoreClosedError("the store is closed")
            if cursor.next_read(store.head):
                try:
                    page = await read_page(store, cursor.filter, cursor.through, cursor.target,
                                           min(limit, cursor.limits.page_size))
                except OffsetOutOfRangeError as gap:
                    # a forced compaction removed events this follower had not read: ``on_gap`` decides whether it
                    # goes on from the floor (True) or the error ends it
                    if self._on_gap is None or not self._on_gap(gap):
                        raise
                    cursor.advance(store.log_floor.for_kind(cursor.filter.kind) - 1)
                    continue
                cursor.advance(page.covered)
                if page.rows:
                    return rows_to_events(page.rows)
                continue
            items = cursor.take(limit)
            if items:
                return [item[0] for item in items]
            if self._on_idle is not None:
                self._on_idle()  # about to wait: everything committed so far was handed out
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
