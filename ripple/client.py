"""A Python client for ripple's subscription endpoints, with resume built in (DESIGN §7).

``async for event in subscribe("http://127.0.0.1:8000", scopes=["todos"], after=0): ...``

The iterator reconnects after any disconnect (network error, server restart, keepalive timeout, ``shutting_down``)
with jittered exponential backoff and resumes from the last offset it saw — or the last ``through`` the server
reported, whichever is later — so the events it yields are every matching event after ``after``, exactly once and in
offset order, however often the connection drops. It always asks for packed frames. Errors that a retry cannot fix
(``bad_request``, ``offset_out_of_range``, ``forbidden``) raise the matching :class:`ripple.RippleError`.

A client that resumes behind the server's floor (the log before ``earliest`` was compacted) gets
``offset_out_of_range``. With ``on_gap="snapshot"`` it starts over by itself: it reconnects with ``snapshot=true``
and yields a :class:`Resync` — the matching keys' values as of the snapshot's offset — before the events after it,
so the application sees the gap and can replace its state instead of applying events to a stale one.
"""

from __future__ import annotations

import asyncio
import random
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from typing import Any, Literal, cast, overload

import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, WebSocketException

from ripple.core.events import Event, KindFilter
from ripple.errors import BadRequestError, OffsetOutOfRangeError, RippleError
from ripple.wire import (
    ErrorFrame,
    EventFrame,
    Events,
    Heartbeat,
    Hello,
    Live,
    Snapshot,
    SnapshotEnd,
    SnapshotItem,
    decode_frame,
)

RETRYABLE_CODES = frozenset({"shutting_down", "overloaded", "internal_error"})
OnGap = Literal["raise", "snapshot"]

__all__ = ["Backoff", "Resync", "subscribe", "subscribe_stream"]


class Resync(msgspec.Struct, frozen=True):
    """Yielded by ``subscribe(..., on_gap="snapshot")`` when the resume point ``after`` was older than the server's
    ``earliest`` offset: the events in between were compacted, so the subscription started over. ``items`` are the
    matching keys' values as of ``offset`` (replace your state with them); the events after ``offset`` follow."""

    after: int | None
    earliest: int | None
    offset: int
    items: list[SnapshotItem]


class Backoff(msgspec.Struct, frozen=True):
    """Reconnect delays: ``initial`` doubling (``factor``) up to ``maximum``, each scaled by a random 50-100 %."""

    initial: float = 0.05
    maximum: float = 5.0
    factor: float = 2.0

    def delays(self) -> Any:
        delay = self.initial
        while True:
            yield delay * (0.5 + random.random() / 2)
            delay = min(self.maximum, delay * self.factor)


def _base(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise BadRequestError(f"not an http(s) or ws(s) URL: {url!r}")
    return urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def _error(frame: ErrorFrame) -> RippleError:
    if frame.code == "offset_out_of_range":
        return OffsetOutOfRangeError(frame.message, detail={"earliest": frame.earliest})
    if frame.code == "bad_request":
        return BadRequestError(frame.message)
    return RippleError(frame.message, code=frame.code)


def _as_event(frame: EventFrame) -> Event:
    return Event(*msgspec.structs.astuple(frame))


async def _resume(
    endpoint: str,
    query: list[tuple[str, str]],
    after: int | None,
    backoff: Backoff,
    connect_options: dict[str, Any],
    on_gap: OnGap = "raise",
) -> AsyncIterator[Event | Resync]:
    position = after  # the resume point: last offset yielded, or a later `through`
    gap: ErrorFrame | None = None  # refused behind the floor: start over from a snapshot (on_gap="snapshot")
    refused: int | None = None  # the resume point that was refused
    items: list[SnapshotItem] = []
    now = False  # reconnect at once (no backoff): the server asked for a snapshot, it did not fail
    delays = backoff.delays()
    options = {"max_size": None, "compression": None, **connect_options}
    while True:
        if gap is not None:
            params = [*query, ("snapshot", "true")]
        else:
            params = query if position is None else [*query, ("after", str(position))]
        url = f"{endpoint}?{urllib.parse.urlencode(params)}" if params else endpoint
        try:
            async with connect(url, **options) as ws:
                async for message in ws:
                    frame = decode_frame(message)
                    if isinstance(frame, Snapshot):
                        items.extend(frame.items)
                    elif isinstance(frame, SnapshotEnd):
                        yield Resync(refused, gap.earliest if gap else None, frame.offset, items)
                        position, gap, items = frame.offset, None, []
                    elif isinstance(frame, Events):
                        for event in frame.events:
                            position = event.offset
                            yield event
                    elif isinstance(frame, EventFrame):
                        position = frame.offset
                        yield _as_event(frame)
                    elif isinstance(frame, Live | Heartbeat):
                        if position is None or frame.through > position:
                            position = frame.through
                    elif isinstance(frame, Hello):
                        position = frame.after
                        delays = backoff.delays()  # connected: the next failure starts the backoff afresh
                    elif isinstance(frame, ErrorFrame):
                        if frame.code == "offset_out_of_range" and on_gap == "snapshot" and position is not None \
                                and (frame.earliest is None or position < frame.earliest - 1):
                            gap, refused, items, now = frame, position, [], True
                            break
                        if frame.code not in RETRYABLE_CODES:
                            raise _error(frame)
                        break
        except (OSError, TimeoutError, WebSocketException) as exc:
            if isinstance(exc, InvalidHandshake) and "HTTP 4" in str(exc):
                raise BadRequestError(f"the server refused the subscription: {exc}") from None
        except msgspec.DecodeError as exc:
            raise RippleError(f"the server sent a frame this client cannot read: {exc}") from None
        if not now:
            await asyncio.sleep(next(delays))
        now = False


@overload
def subscribe(
    url: str, *, scopes: Sequence[str] = ..., keys: Sequence[str] = ..., kind: KindFilter = ...,
    after: int | None = ..., batch: int = ..., backoff: Backoff | None = ...,
    connect_options: dict[str, Any] | None = ..., on_gap: Literal["raise"] = ...,
) -> AsyncIterator[Event]: ...


@overload
def subscribe(
    url: str, *, scopes: Sequence[str] = ..., keys: Sequence[str] = ..., kind: KindFilter = ...,
    after: int | None = ..., batch: int = ..., backoff: Backoff | None = ...,
    connect_options: dict[str, Any] | None = ..., on_gap: Literal["snapshot"],
) -> AsyncIterator[Event | Resync]: ...


def subscribe(
    url: str,
    *,
    scopes: Sequence[str] = (),
    keys: Sequence[str] = (),
    kind: KindFilter = "state",
    after: int | None = None,
    batch: int = 100,
    backoff: Backoff | None = None,
    connect_options: dict[str, Any] | None = None,
    on_gap: OnGap = "raise",
) -> AsyncIterator[Event] | AsyncIterator[Event | Resync]:
    """Events of ``/v1/subscribe`` after ``after`` (``None``: from the head at first connect), resuming forever.

    ``url`` is the server's base URL (``http://host:port`` or ``ws://host:port``). ``on_gap``: what to do when the
    resume point is older than the server's ``earliest`` offset — ``"raise"`` :class:`OffsetOutOfRangeError`, or
    ``"snapshot"``: start over from a snapshot, yielding a :class:`Resync` first.
    """
    if isinstance(scopes, str) or isinstance(keys, str):
        raise BadRequestError("scopes and keys take a list of names, not a single string")
    if on_gap not in ("raise", "snapshot"):
        raise BadRequestError(f"on_gap must be 'raise' or 'snapshot', not {on_gap!r}")
    query = [("kind", kind), ("batch", str(batch))]
    query += [("scope", s) for s in scopes] + [("key", k) for k in keys]
    return _resume(f"{_base(url)}/v1/subscribe", query, after, backoff or Backoff(), connect_options or {}, on_gap)


def subscribe_stream(
    url: str,
    stream: str,
    group: str,
    *,
    after: int | None = None,
    batch: int = 100,
    backoff: Backoff | None = None,
    connect_options: dict[str, Any] | None = None,
) -> AsyncIterator[Event]:
    """Events of one stream group (``/v1/streams/{stream}/{group}``), resuming forever like :func:`subscribe`."""
    path = f"/v1/streams/{urllib.parse.quote(stream, safe='')}/{urllib.parse.quote(group, safe='/')}"
    events = _resume(f"{_base(url)}{path}", [("batch", str(batch))], after, backoff or Backoff(), connect_options or {})
    return cast(AsyncIterator[Event], events)  # on_gap="raise": never a Resync
