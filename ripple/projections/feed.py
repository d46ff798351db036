"""A lossless feed of committed events for one consumer (a reaction or an async projection).

Live events arrive from the writer's commit listener into a bounded buffer. When the consumer is behind — it started
from a cursor, or the buffer overflowed — the feed reads the log instead, from the last offset it covered, and goes
live again once it has reached the head. Nothing is dropped and nobody waits for a slow consumer (DESIGN §5, the
same pattern as the subscription hub's overflow → catch-up).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ripple.core.events import Event, KindFilter
from ripple.projections.runner import page_sql
from ripple.store.reader import events_filter
from ripple.store.sqlite import row_to_event

if TYPE_CHECKING:
    from ripple.store.store import Store

DEFAULT_CAPACITY = 10_000


class LogFeed:
    """Events matching ``kind``/``scopes``/``keys`` with offset > ``after``, in offset order, in batches.

    ``attach()`` subscribes it to the writer's commits; ``detach()`` stops that. ``live=True`` starts in live mode
    (only for consumers that start at the head: ephemeral reactions).
    """

    def __init__(
        self,
        store: Store,
        *,
        after: int,
        kind: KindFilter = "state",
        scopes: Sequence[str] | None = None,
        keys: Sequence[str] | None = None,
        capacity: int = DEFAULT_CAPACITY,
        live: bool = False,
        on_overflow: Callable[[], None] | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.kind = kind
        self.scopes = None if scopes is None else frozenset(scopes)
        self.keys = None if keys is None else frozenset(keys)
        self.capacity = capacity
        self.tail = after  # every matching event <= tail is in the buffer or was returned
        self.lagging = not live  # True: read the log from ``tail`` until the head
        self.overflows = 0
        self._on_overflow = on_overflow
        self._on_idle = on_idle
        self._buffer: collections.deque[Event] = collections.deque()
        self._wake = asyncio.Event()
        self._unsubscribe: Callable[[], None] | None = None

    def attach(self) -> None:
        if self._unsubscribe is None:
            self._unsubscribe = self.store.commits.subscribe(self.push)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def matches(self, event: Event) -> bool:
        if self.kind != "all" and event.kind != self.kind:
            return False
        if self.scopes is not None and event.scope not in self.scopes:
            return False
        return self.keys is None or event.key in self.keys

    @property
    def idle(self) -> bool:
        """Live with nothing buffered: every matching committed event was handed out."""
        return not self.lagging and not self._buffer

    def push(self, events: list[Event]) -> None:
        """The commit listener: runs on the loop after each COMMIT; never blocks."""
        if self.lagging:
            return  # the log read will get them
        added = False
        for event in events:
            if event.offset <= self.tail:
                continue
            if self.matches(event):
                if len(self._buffer) >= self.capacity:
                    self.lagging = True  # keep what is buffered; read the rest from the log after ``tail``
                    self.overflows += 1
                    if self._on_overflow is not None:
                        self._on_overflow()
                    break
                self._buffer.append(event)
                added = True
            self.tail = event.offset
        if added or self.lagging:
            self._wake.set()

    async def next(self, limit: int) -> tuple[list[Event], int]:
        """Up to ``limit`` events and the position they cover (every matching event <= position was returned)."""
        while True:
            if self._buffer:
                n = min(limit, len(self._buffer))
                batch = [self._buffer.popleft() for _ in range(n)]
                return batch, (batch[-1].offset if self._buffer else self.tail)
            if self.lagging:
                events = await self._read_log(limit)
                if events:
                    return events, self.tail
                continue
            self._wake.clear()
            if self._on_idle is not None:
                self._on_idle()  # about to wait: everything committed so far was handed out
            await self._wake.wait()

    async def _read_log(self, limit: int) -> list[Event]:
        target = self.store.head
        if self.tail >= target:
            self.lagging = False
            return []
        where, params = events_filter(
            self.tail,
            kind=self.kind,
            scopes=None if self.scopes is None else sorted(self.scopes),
            keys=None if self.keys is None else sorted(self.keys),
            upto=target,
        )
        # execute_fetchall (not execute + fetchall): a consumer cancelled mid-read (store closing) must not leave an
        # open statement on a pooled reader, which would hold a read lock and stall the final WAL checkpoint.
        async with self.store.reader.connection() as conn:
            rows = await conn.execute_fetchall(page_sql(where, by_key=self.keys is not None), (*params, limit))
        events = [row_to_event(r) for r in rows]
        self.tail = events[-1].offset if len(events) == limit else target
        # No await since the check: every event <= head was already offered to push() (and ignored while lagging),
        # every later one will be, so from here on the buffer sees all of them.
        if self.tail >= self.store.head:
            self.lagging = False
        return events
