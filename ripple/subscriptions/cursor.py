"""The one log follower: where a reader of the log stands, its resume point and its bounded live buffer. Sans-I/O.

Every reader that follows the log — WebSocket and embedded subscriptions, reactions, async projections, the iii
trigger pump and stream server — is a thin driver of a :class:`Cursor`: it asks :meth:`Cursor.next_read` whether to
read a page of the log or take live events, and hands over what it read with :meth:`Cursor.advance` or
:meth:`Cursor.take`. The hub (``ripple.subscriptions.hub``) pushes each commit into the cursors that may want it.

The guarantee of DESIGN §7 — every matching event after ``after`` exactly once, in offset order, across the switch from
catch-up (log) to live (hub) — rests on one ordering, all on the event loop:

1. the cursor is attached to the hub and starts a *round*: ``target`` = the head now, the buffer accepts every
   matching event the hub publishes from here on (all of them are > ``target``);
2. the owner reads the log in pages up to ``target`` and hands them over (``through`` advances);
3. if the buffer never overflowed during the round, the cursor goes live: the buffered events (dropping any
   ≤ ``through``) follow, then events straight from the hub. If it overflowed, the buffer was dropped and stopped
   accepting — a new round reads what it missed from the log. Nothing is lost, nothing is sent twice.

``through`` is the offset up to which every matching event has been handed over: a safe resume point even when no
event matched for a long time (sent to clients in ``live`` and ``heartbeat`` frames).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import msgspec

from ripple.core.events import Event
from ripple.core.filter import Filter

if TYPE_CHECKING:
    from ripple.subscriptions.hub import Commit

DEFAULT_MAX_BUFFER_EVENTS = 10_000
DEFAULT_MAX_BUFFER_BYTES = 8 * 1024 * 1024
DEFAULT_PAGE_SIZE = 1000


class Limits(msgspec.Struct, frozen=True):
    """Per-follower bounds: the live buffer (events, and bytes of encoded JSON) and the catch-up page size.

    ``max_buffer_bytes=None`` counts no bytes (and encodes nothing): for followers that never send JSON, whose
    buffered events are bounded by count.
    """

    max_buffer_events: int = DEFAULT_MAX_BUFFER_EVENTS
    max_buffer_bytes: int | None = DEFAULT_MAX_BUFFER_BYTES
    page_size: int = DEFAULT_PAGE_SIZE


# An event waiting in a live buffer, with its encoded JSON body (shared with every other subscriber).
Buffered = tuple[Event, bytes]


class Cursor:
    """One subscription's position and live buffer. The hub calls :meth:`push`; the owner drives the rest.

    ``inline`` (optional) is the fast path of a WebSocket subscriber: called with a commit while the cursor is live
    and its buffer empty, it writes the commit's frames straight to the connection and returns ``True``, or returns
    ``False`` (connection paused) and the events are buffered for the owner's task instead.
    """

    __slots__ = (
        "accepting",
        "buffer",
        "buffer_bytes",
        "buffer_through",
        "counters",
        "filter",
        "inline",
        "limits",
        "live",
        "on_overflow",
        "overflow_counter",
        "target",
        "through",
        "wake",
    )

    def __init__(
        self,
        filter: Filter,
        after: int,
        limits: Limits,
        *,
        counters: dict[str, int],
        wake: Callable[[], None],
        overflow_counter: str = "subscriber_overflows",
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self.filter = filter
        self.limits = limits
        self.through = after
        self.target = after
        self.live = False
        self.accepting = False
        self.buffer: collections.deque[Buffered] = collections.deque()
        self.buffer_bytes = 0
        self.buffer_through = after
        self.counters = counters
        self.wake = wake
        self.inline: Callable[[Commit], bool] | None = None
        self.overflow_counter = overflow_counter  # the store counter this follower's overflows add to
        self.on_overflow = on_overflow

    # -- the owner

    def start_round(self, head: int) -> int:
        """Begin a catch-up round up to ``head`` (the store's head now); the buffer restarts, accepting."""
        self.live = False
        self.accepting = True
        self.buffer.clear()
        self.buffer_bytes = 0
        self.target = head
        self.buffer_through = head
        return head

    def advance(self, covered: int) -> None:
        """Every matching event up to ``covered`` was handed over (a catch-up page or a snapshot)."""
        if covered > self.through:
            self.through = covered

    @property
    def caught_up(self) -> bool:
        return self.through >= self.target

    @property
    def idle(self) -> bool:
        """Every matching event committed so far was handed over: the round reached its target without an overflow
        and nothing waits in the buffer."""
        return self.caught_up and self.accepting and not self.buffer

    def go_live(self) -> bool:
        """After a round reached its target: go live, or ``False`` if the buffer overflowed (start another round)."""
        if not self.accepting or not self.caught_up:
            return False
        self.live = True
        return True

    def next_read(self, head: int) -> bool:
        """The driver's step: ``True`` = read the log after ``through`` up to ``target`` and :meth:`advance`;
        ``False`` = live: :meth:`take` the buffer (or wait to be woken). ``head`` is the store's head now."""
        while not self.live:
            if not self.caught_up:
                return True
            if not self.go_live():
                self.start_round(head)  # the buffer overflowed: read what it dropped from the log
        return False

    def take(self, limit: int | None = None) -> list[Buffered]:
        """Up to ``limit`` buffered live events (dropping any already covered by catch-up), oldest first; ``through``
        moves past them (past everything buffered, matching or not, once the buffer is empty)."""
        buffer, through = self.buffer, self.through
        while buffer and buffer[0][0].offset <= through:
            self.buffer_bytes -= len(buffer.popleft()[1])
        n = len(buffer) if limit is None else min(limit, len(buffer))
        items = [buffer.popleft() for _ in range(n)]
        if buffer:
            self.buffer_bytes -= sum(len(item[1]) for item in items)
            self.through = items[-1][0].offset
        else:
            self.buffer_bytes = 0
            self.through = max(self.through, self.buffer_through, items[-1][0].offset if items else 0)
        return items

    def current_through(self, head: int) -> int:
        """The resume point to report: live with nothing pending means everything up to the head was handled."""
        if self.live and not self.buffer:
            return max(head, self.through)
        return self.through

    # -- the hub (must not block or await)

    def push(self, commit: Commit) -> None:
        matching = commit.matching(self.filter)
        if not matching:
            if self.buffer:
                self.buffer_through = commit.last
            return
        if self.live:
            if not self.buffer:
                if self.inline is not None and self.inline(commit):
                    self.through = commit.last
                    return
                # everything before this commit was handed over: the resume point if this buffer overflows
                self.advance(commit.events[0].offset - 1)
        elif not self.accepting:
            return  # overflowed during this round: the next round reads these from the log
        self._append(commit, matching)

    def _append(self, commit: Commit, matching: Sequence[int]) -> None:
        buffer = self.buffer
        events = commit.events
        max_bytes = self.limits.max_buffer_bytes
        if max_bytes is None:
            buffer.extend((events[i], b"") for i in matching)
        else:
            size = self.buffer_bytes
            for i in matching:
                body = commit.body(i)
                buffer.append((events[i], body))
                size += len(body)
            self.buffer_bytes = size
        self.buffer_through = commit.last
        if len(buffer) > self.limits.max_buffer_events or (max_bytes is not None and self.buffer_bytes > max_bytes):
            was_live = self.live
            self._overflow()
            if was_live:
                self.wake()
        elif self.live:
            self.wake()  # once per commit while the connection is paused (or for an embedded iterator)

    def _overflow(self) -> None:
        # Drop the live buffer and fall back to the log from `through`: the reader sees latency, never loss.
        self.buffer.clear()
        self.buffer_bytes = 0
        self.live = False
        self.accepting = False
        self.counters[self.overflow_counter] = self.counters.get(self.overflow_counter, 0) + 1
        if self.on_overflow is not None:
            self.on_overflow()
