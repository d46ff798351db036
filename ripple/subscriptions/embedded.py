"""``store.subscribe(...)``: the embedded subscription, an async iterator of :class:`~ripple.core.events.Event`.

A thin driver of a :class:`~ripple.subscriptions.follower.Follower` with no task of its own: the consumer's
``async for`` reads catch-up pages itself and, once live, takes what the hub buffered (one wake-up per commit at
most). A consumer slower than the writer overflows its buffer and silently falls back to the log — it sees latency,
never loss or duplicates.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from ripple.core.events import Event, KindFilter
from ripple.core.filter import Filter
from ripple.core.validate import validate_key, validate_scope
from ripple.errors import StoreClosedError, ValidationError
from ripple.store.sqlite import decode_json
from ripple.subscriptions.catchup import check_after, read_snapshot
from ripple.subscriptions.cursor import Limits
from ripple.subscriptions.follower import Follower
from ripple.wire import SnapshotItem

if TYPE_CHECKING:
    from ripple.store.store import Store

MAX_BATCH = 1000


def make_filter(kind: object, scopes: Sequence[str] | None, keys: Sequence[str] | None) -> Filter:
    if kind not in ("state", "stream", "all"):
        raise ValidationError(f"kind must be 'state', 'stream' or 'all', not {kind!r}", detail={"kind": repr(kind)})
    if isinstance(scopes, str) or isinstance(keys, str):
        raise ValidationError("scopes and keys take a list of names, not a single string")
    for s in scopes or ():
        validate_scope(s)
    for k in keys or ():
        validate_key(k)
    return Filter.of(kind, scopes, keys)


def check_batch(batch: object) -> int | None:
    if batch is None:
        return None
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
        raise ValidationError(f"batch must be an integer from 1 to {MAX_BATCH}, not {batch!r}")
    return batch


class Subscription:
    """Every matching event after ``after`` exactly once, in offset order (DESIGN §7), then live events.

    ``async with store.subscribe(scopes=["todos"], after=0) as sub: async for event in sub: ...``. With
    ``snapshot=True``, ``sub.snapshot`` holds the matching keys' values as of ``sub.snapshot_offset`` once entered, and
    the iterator yields the events after it. ``sub.through`` is a safe resume point.
    """

    def __init__(
        self,
        store: Store,
        *,
        scopes: Sequence[str] | None = None,
        keys: Sequence[str] | None = None,
        kind: KindFilter = "state",
        after: int | None = None,
        snapshot: bool = False,
        batch: int | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.filter = make_filter(kind, scopes, keys)
        if after is not None and (isinstance(after, bool) or not isinstance(after, int) or after < 0):
            raise ValidationError(f"after must be a non-negative integer, not {after!r}", detail={"after": repr(after)})
        if snapshot and after is not None:
            raise ValidationError("after and snapshot=True are mutually exclusive")
        self.batch = check_batch(batch)
        self._store = store
        self._after = after
        self._want_snapshot = snapshot
        self.limits = limits or store.hub.settings.limits
        self.snapshot: list[SnapshotItem] | None = None
        self.snapshot_offset: int | None = None
        self.after: int | None = None  # the exclusive start, once started
        self._follower: Follower | None = None
        self._ready: collections.deque[Event] = collections.deque()
        self._closed = False

    # -- lifecycle

    async def start(self) -> Subscription:
        """Attach to the hub, then (``snapshot=True``) read the snapshot. Idempotent."""
        if self._follower is not None:
            return self
        store = self._store
        store.check_open()
        if self._after is not None:
            await check_after(store, self._after, self.filter.kind)
        after = store.head if self._after is None else self._after
        # attach first: nothing committed from here on can be missed
        follower = self._follower = Follower(store, self.filter, after, limits=self.limits).attach()
        try:
            if self._want_snapshot:
                offset, rows = await read_snapshot(store, self.filter)
                self.snapshot = [SnapshotItem(r[0], r[1], decode_json(r[2]), r[3], r[4]) for r in rows]
                self.snapshot_offset = offset
                follower.cursor.advance(offset)
        except BaseException:
            await self.aclose()
            raise
        self.after = follower.through
        return self

    async def aclose(self) -> None:
        self._closed = True
        if self._follower is not None:
            self._follower.detach()

    async def __aenter__(self) -> Subscription:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def through(self) -> int:
        """Every matching event up to this offset has been yielded (or is queued to be)."""
        if self._follower is None:
            return self._after or 0
        if self._ready:
            return self._ready[0].offset - 1
        return self._follower.cursor.current_through(self._store.head)

    # -- iteration

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._ready:
            await self._fill()
        return self._ready.popleft()

    async def batches(self, max_events: int | None = None) -> AsyncIterator[list[Event]]:
        """Lists of up to ``max_events`` (default ``batch``, else 100) consecutive events, as many as are ready."""
        max_events = check_batch(max_events) or self.batch or 100
        while True:
            while not self._ready:
                try:
                    await self._fill()
                except StopAsyncIteration:
                    return
            n = min(max_events, len(self._ready))
            yield [self._ready.popleft() for _ in range(n)]

    async def _fill(self) -> None:
        if self._closed:
            raise StopAsyncIteration
        if self._follower is None:
            await self.start()
        assert self._follower is not None
        try:
            self._ready.extend(await self._follower.next(self.limits.page_size))
        except StoreClosedError:
            if self._closed:
                raise StopAsyncIteration from None
            await self.aclose()
            raise StoreClosedError("the store closed while subscribed") from None
