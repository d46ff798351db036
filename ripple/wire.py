"""The subscription frames of DESIGN §7 as msgspec Structs, and the byte-level helpers that share encoded frames.

Server → client frames are JSON text, one per WebSocket message, tagged by ``type``. Encoders and decoders are built
once at import. An event's JSON object has one encoding, made two ways (tests/store/test_event_json.py proves they
give the same bytes):

- catch-up and export: SQLite builds it from the stored row (``ripple.store.sql.EVENT_JSON``), splicing the stored
  JSON columns, and :func:`pack_json` packs those texts into frames;
- live events: each :class:`~ripple.core.events.Event` is encoded once per commit (:func:`event_body`) and every
  subscriber shares those bytes, spliced into ``event`` / ``events`` frames by :func:`event_frame` /
  :func:`events_frame`.

:func:`ws_text_frame` wraps a payload into an unmasked server-to-client WebSocket text frame, so the same frame bytes
can be written to every subscriber's transport (RFC 6455 §5.2; servers never mask).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import msgspec

from ripple.core.events import Event
from ripple.store.sql import EVENT_SEPARATOR

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 1024 * 1024  # a packed frame stops growing past this (a single event may exceed it)

# ---- server → client ----------------------------------------------------------------------------------------


class Hello(msgspec.Struct, frozen=True, tag="hello", tag_field="type"):
    """First frame: the server's head and the exclusive offset the subscription starts after."""

    version: int
    head: int
    after: int
    earliest: int


class SnapshotItem(msgspec.Struct, frozen=True):
    scope: str
    key: str
    value: Any
    version: int
    offset: int


class RawSnapshotItem(msgspec.Struct, frozen=True):
    """A snapshot item with the stored value spliced in."""

    scope: str
    key: str
    value: msgspec.Raw
    version: int
    offset: int


class Snapshot(msgspec.Struct, frozen=True, tag="snapshot", tag_field="type"):
    offset: int
    items: list[SnapshotItem]


class RawSnapshot(msgspec.Struct, frozen=True, tag="snapshot", tag_field="type"):
    offset: int
    items: list[RawSnapshotItem]


class SnapshotEnd(msgspec.Struct, frozen=True, tag="snapshot_end", tag_field="type"):
    offset: int


class EventFrame(Event, frozen=True, tag="event", tag_field="type"):
    """An ``event`` frame as a client decodes it (the fields of :class:`Event`)."""


class Events(msgspec.Struct, frozen=True, tag="events", tag_field="type"):
    events: list[Event]


class Live(msgspec.Struct, frozen=True, tag="live", tag_field="type"):
    """Caught up: every matching event up to ``through`` was sent; live events follow."""

    through: int


class Heartbeat(msgspec.Struct, frozen=True, tag="heartbeat", tag_field="type"):
    head: int
    through: int


class ErrorFrame(msgspec.Struct, frozen=True, tag="error", tag_field="type", omit_defaults=True):
    code: str
    message: str
    earliest: int | None = None


ServerFrame = Hello | Snapshot | SnapshotEnd | EventFrame | Events | Live | Heartbeat | ErrorFrame

encode = msgspec.json.Encoder().encode
decode_frame = msgspec.json.Decoder(ServerFrame).decode

_NULL = msgspec.Raw(b"null")
_EMPTY_OBJECT = msgspec.Raw(b"{}")


def raw_json(text: str | bytes | None) -> msgspec.Raw:
    if text is None:
        return _NULL
    return msgspec.Raw(text.encode() if isinstance(text, str) else text)


def pack(bodies: Sequence[bytes], batch: int | None) -> list[bytes]:
    """Frame payloads for consecutive event bodies: one ``event`` each, or ``events`` frames of up to ``batch``."""
    if batch is None or len(bodies) == 1:
        return [event_frame(b) for b in bodies]
    out: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for body in bodies:
        if chunk and (len(chunk) >= batch or size + len(body) > MAX_FRAME_BYTES):
            out.append(event_frame(chunk[0]) if len(chunk) == 1 else events_frame(chunk))
            chunk, size = [], 0
        chunk.append(body)
        size += len(body)
    if chunk:
        out.append(event_frame(chunk[0]) if len(chunk) == 1 else events_frame(chunk))
    return out


def pack_joined(joined: bytes, batch: int | None) -> list[bytes]:
    """Frame payloads for a catch-up page built by SQLite (``ripple.store.sql.events_json_page``): event bodies
    joined by ``EVENT_SEPARATOR``. Cut and joined in C, ``batch`` bodies a frame; only a frame that would pass
    ``MAX_FRAME_BYTES`` is re-cut body by body, as :func:`pack` cuts live frames."""
    bodies = joined.split(EVENT_SEPARATOR)
    if batch is None or batch == 1:
        return [event_frame(b) for b in bodies]
    out: list[bytes] = []
    for start in range(0, len(bodies), batch):
        chunk = bodies[start : start + batch]
        if len(chunk) == 1:
            out.append(event_frame(chunk[0]))
            continue
        frame = events_frame(chunk)
        if len(frame) > MAX_FRAME_BYTES:
            out.extend(pack(chunk, batch))
        else:
            out.append(frame)
    return out


def pack_snapshot(offset: int, items: Sequence[RawSnapshotItem], max_items: int = 1000) -> list[bytes]:
    """``snapshot`` frame payloads of up to ``max_items`` items (or about 1 MiB) each."""
    out: list[bytes] = []
    chunk: list[RawSnapshotItem] = []
    size = 0
    for item in items:
        n = len(item.value) + len(item.key) + 100
        if chunk and (len(chunk) >= max_items or size + n > 1024 * 1024):
            out.append(encode(RawSnapshot(offset, chunk)))
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        out.append(encode(RawSnapshot(offset, chunk)))
    return out


# ---- splicing shared bytes ------------------------------------------------------------------------------------


def event_body(event: Event) -> bytes:
    """An event's JSON object (``{"offset":…,…}``): encoded once per commit, shared by every subscriber."""
    return encode(event)


def event_frame(body: bytes) -> bytes:
    """``{"type":"event", …}`` from an event body."""
    return b'{"type":"event",' + body[1:]


def events_frame(bodies: Sequence[bytes]) -> bytes:
    """``{"type":"events","events":[…]}`` from event bodies."""
    return b'{"type":"events","events":[' + b",".join(bodies) + b"]}"


def ws_text_frame(payload: bytes) -> bytes:
    """An unmasked, final WebSocket text frame holding ``payload`` (server → client, no extension bits)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x81, 126, n) + payload
    return struct.pack("!BBQ", 0x81, 127, n) + payload
