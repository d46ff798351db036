"""A Python client for ripple's subscription endpoints, with resume built in (DESIGN §7).

``async for event in subscribe("http://127.0.0.1:8000", scopes=["todos"], after=0): ...``

The iterator reconnects after any disconnect (network error, server restart, keepalive timeout, ``shutting_down``)
with jittered exponential backoff and resumes from the last offset it saw — or the last ``through`` the server
reported, whichever is later — so the events it yields are every matching event after ``after``, exactly once and in
offset order, however often the connection drops. It always asks for packed frames. Errors that a retry cannot fix
(``bad_request``, ``offset_out_of_range``, ``forbidden``) raise the matching :class:`ripple.RippleError`.
"""

from __future__ import annotations

import asyncio
import random
import urllib.parse
from collections.abc import AsyncIterator, Sequence
from typing import Any

import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, WebSocketException

from ripple.core.events import Event, KindFilter
from ripple.errors import BadRequestError, OffsetOutOfRangeError, RippleError
from ripple.wire import ErrorFrame, EventFrame, Events, Heartbeat, Hello, Live, decode_frame

RETRYABLE_CODES = frozenset({"shutting_down", "overloaded", "internal_error"})

__all__ = ["Backoff", "subscribe", "subscribe_stream"]


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
) -> AsyncIterator[Event]:
    position = after  # the resume point: last offset yielded, or a later `through`
    delays = backoff.delays()
    options = {"max_size": None, "compression": None, **connect_options}
    while True:
        params = query if position is None else [*query, ("after", str(position))]
        url = f"{endpoint}?{urllib.parse.urlencode(params)}" if params else endpoint
        try:
            async with connect(url, **options) as ws:
                async for message in ws:
                    frame = decode_frame(message)
                    if isinstance(frame, Events):
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
                        if frame.code not in RETRYABLE_CODES:
                            raise _error(frame)
                        break
        except (OSError, TimeoutError, WebSocketException) as exc:
            if isinstance(exc, InvalidHandshake) and "HTTP 4" in str(exc):
                raise BadRequestError(f"the server refused the subscription: {exc}") from None
        except msgspec.DecodeError as exc:
            raise RippleError(f"the server sent a frame this client cannot read: {exc}") from None
        await asyncio.sleep(next(delays))


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
) -> AsyncIterator[Event]:
    """Events of ``/v1/subscribe`` after ``after`` (``None``: from the head at first connect), resuming forever.

    ``url`` is the server's base URL (``http://host:port`` or ``ws://host:port``).
    """
    if isinstance(scopes, str) or isinstance(keys, str):
        raise BadRequestError("scopes and keys take a list of names, not a single string")
    query = [("kind", kind), ("batch", str(batch))]
    query += [("scope", s) for s in scopes] + [("key", k) for k in keys]
    return _resume(f"{_base(url)}/v1/subscribe", query, after, backoff or Backoff(), connect_options or {})


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
    return _resume(f"{_base(url)}{path}", [("batch", str(batch))], after, backoff or Backoff(), connect_options or {})
