"""The in-process hub: after each commit the writer publishes the committed events here, in offset order.

The hub never awaits. For each commit it builds one :class:`Commit`, which encodes each event once and memoises, per
filter, which events match and, per (filter, packing), the WebSocket frames that carry them — so a thousand subscribers
on one scope cost one JSON encode and one frame build per event, then one ``transport.write`` each (DESIGN §13,
"Fan-out cost"). Subscriptions are indexed by scope so a commit only visits the cursors that may want it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from ripple.core.events import Event
from ripple.core.filter import Filter
from ripple.subscriptions.cursor import (
    DEFAULT_MAX_BUFFER_BYTES,
    DEFAULT_MAX_BUFFER_EVENTS,
    DEFAULT_PAGE_SIZE,
    Cursor,
    Limits,
)
from ripple.wire import event_body, pack, ws_text_frame

log = logging.getLogger("ripple.subscriptions")

class Session(Protocol):
    """A WebSocket subscriber the hub can close (``ripple.http.ws``)."""

    async def shutdown(self, code: int) -> None: ...


class HubSettings(msgspec.Struct, frozen=True):
    """Subscription settings shared by the embedded API and the WebSocket endpoints."""

    heartbeat_interval: float = 15.0
    max_buffer_events: int = DEFAULT_MAX_BUFFER_EVENTS
    max_buffer_bytes: int = DEFAULT_MAX_BUFFER_BYTES
    page_size: int = DEFAULT_PAGE_SIZE

    @property
    def limits(self) -> Limits:
        return Limits(self.max_buffer_events, self.max_buffer_bytes, self.page_size)


class Commit:
    """One published group of events, with everything derived from it computed at most once."""

    __slots__ = ("_bodies", "_frames", "_matching", "derived", "events", "last")

    def __init__(self, events: list[Event]) -> None:
        self.events = events
        self.last = events[-1].offset
        # encodings other protocols derive from these events (the iii stream envelopes), memoised per commit
        self.derived: dict[str, dict[int, bytes]] = {}
        self._bodies: list[bytes | None] = [None] * len(events)
        self._matching: dict[Filter, list[int]] = {}
        self._frames: dict[tuple[Filter, int | None], list[bytes]] = {}

    def matching(self, f: Filter) -> list[int]:
        """Indexes of the events that ``f`` matches (memoised per filter)."""
        found = self._matching.get(f)
        if found is None:
            found = self._matching[f] = [i for i, e in enumerate(self.events) if f.matches(e)]
        return found

    def body(self, i: int) -> bytes:
        body = self._bodies[i]
        if body is None:
            body = self._bodies[i] = event_body(self.events[i])
        return body

    def frames(self, f: Filter, batch: int | None) -> list[bytes]:
        """WebSocket frames (header included) carrying the matching events, shared by every subscriber alike."""
        key = (f, batch)
        found = self._frames.get(key)
        if found is None:
            payloads = pack([self.body(i) for i in self.matching(f)], batch)
            found = self._frames[key] = [ws_text_frame(p) for p in payloads]
        return found


class Hub:
    """Fans committed events out to the cursors of every log follower; ``publish`` is a commit-bus listener."""

    def __init__(
        self,
        head: Callable[[], int],
        counters: dict[str, int],
        settings: HubSettings | None = None,
    ) -> None:
        self._head = head
        self.counters = counters
        counters.setdefault("subscriber_overflows", 0)
        counters.setdefault("ws_fast_path_commits", 0)  # commits written straight to a WebSocket (DESIGN §13)
        self.settings = settings or HubSettings()
        self._by_scope: dict[str, set[Cursor]] = {}
        self._any_scope: set[Cursor] = set()
        self.sessions: set[Session] = set()  # live WebSocket sessions (ripple.http.ws), for close_subscribers
        self._no_sessions = asyncio.Event()
        self._no_sessions.set()
        self.closed = False

    @property
    def head(self) -> int:
        return self._head()

    def __len__(self) -> int:
        return len(self._any_scope) + sum(len(s) for s in self._by_scope.values())

    def attach(self, cursor: Cursor) -> int:
        """Register a cursor and start its first round at the current head (returned)."""
        if cursor.filter.scopes:
            for scope in cursor.filter.scopes | cursor.filter.item_scopes:
                self._by_scope.setdefault(scope, set()).add(cursor)
        else:
            self._any_scope.add(cursor)
        return cursor.start_round(self.head)

    def detach(self, cursor: Cursor) -> None:
        self._any_scope.discard(cursor)
        for scope in cursor.filter.scopes | cursor.filter.item_scopes:
            bucket = self._by_scope.get(scope)
            if bucket is not None:
                bucket.discard(cursor)
                if not bucket:
                    del self._by_scope[scope]

    def publish(self, events: list[Event]) -> None:
        """The writer's commit listener: runs on the loop after COMMIT, before the writers are acknowledged."""
        if not events:
            return
        by_scope = self._by_scope
        if not by_scope and not self._any_scope:
            return
        scope = events[0].scope
        if all(e.scope == scope for e in events):
            bucket = by_scope.get(scope)
            if bucket is None:
                targets: Any = self._any_scope
            elif self._any_scope:
                targets = bucket | self._any_scope
            else:
                targets = bucket
        else:
            targets = set(self._any_scope)
            for e in events:
                bucket = by_scope.get(e.scope)
                if bucket:
                    targets |= bucket
        if not targets:
            return
        commit = Commit(events)
        for cursor in tuple(targets):
            try:
                cursor.push(commit)
            except Exception:  # one broken subscriber must not stop the others
                log.exception("subscription push failed")

    def add_session(self, session: Session) -> None:
        self.sessions.add(session)
        self._no_sessions.clear()

    def discard_session(self, session: Session) -> None:
        self.sessions.discard(session)
        if not self.sessions:
            self._no_sessions.set()

    async def wait_no_sessions(self) -> None:
        """Return once no WebSocket subscriber is connected."""
        await self._no_sessions.wait()

    def cursors(self) -> set[Cursor]:
        out = set(self._any_scope)
        for bucket in self._by_scope.values():
            out |= bucket
        return out

    async def close_sessions(self, code: int = 1001, wait: float = 5.0) -> None:
        """Send every WebSocket subscriber ``shutting_down`` and close it with ``code``."""
        sessions = list(self.sessions)
        if sessions:
            tasks = [asyncio.ensure_future(s.shutdown(code)) for s in sessions]
            _done, pending = await asyncio.wait(tasks, timeout=wait)
            for task in pending:
                task.cancel()

    async def aclose(self) -> None:
        """The store is closing: close the WebSocket subscribers, wake every embedded one so it notices."""
        self.closed = True
        await self.close_sessions(1001)
        for cursor in self.cursors():
            cursor.wake()
