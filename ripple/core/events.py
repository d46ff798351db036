"""Typed records that cross module boundaries: events, commands, results (DESIGN §2, §4, §12).

Stored events live forever, so new fields take defaults and go last (msgspec schema evolution).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ripple.core.ops import UpdateOp

Kind = Literal["state", "stream"]
KindFilter = Literal["state", "stream", "all"]


class Meta(msgspec.Struct, frozen=True, omit_defaults=True):
    """Why an event was written. Only fields that are set are stored."""

    cause: int | None = None
    depth: int | None = None
    idempotency_key: str | None = None
    actor: str | None = None
    id: str | None = None


EMPTY_META = Meta()


class Event(msgspec.Struct, frozen=True):
    """One entry of the log (DESIGN §2). ``offset`` is stored in the column ``seq``."""

    offset: int
    ts: int
    kind: Kind
    scope: str
    key: str
    op: str
    event_type: str
    version: int
    old_value: Any
    new_value: Any
    meta: Meta = EMPTY_META


# ---- commands -------------------------------------------------------------------------------------------------


class Set(msgspec.Struct, frozen=True, tag="set", tag_field="op"):
    scope: str
    key: str
    value: Any
    expected_offset: int | None = None


class Update(msgspec.Struct, frozen=True, tag="update", tag_field="op"):
    scope: str
    key: str
    ops: list[UpdateOp]
    expected_offset: int | None = None


class Delete(msgspec.Struct, frozen=True, tag="delete", tag_field="op"):
    scope: str
    key: str
    expected_offset: int | None = None


class Send(msgspec.Struct, frozen=True, tag="send", tag_field="op"):
    stream: str
    group: str
    type: str
    data: Any
    id: str | None = None


StateCommand = Set | Update | Delete


# ---- results ------------------------------------------------------------------------------------------------


class OpError(msgspec.Struct, frozen=True):
    """One failed update op, in iii's shape."""

    op_index: int
    code: str
    message: str


class SetResult(msgspec.Struct, frozen=True):
    old_value: Any
    new_value: Any
    version: int
    offset: int


class UpdateResult(msgspec.Struct, frozen=True):
    old_value: Any
    new_value: Any
    version: int
    offset: int
    errors: list[OpError] = []


class DeleteResult(msgspec.Struct, frozen=True):
    old_value: Any
    offset: int


class SendResult(msgspec.Struct, frozen=True):
    offset: int


class Entry(msgspec.Struct, frozen=True):
    """A key's current value (or its value as of an offset) with its version and last offset."""

    key: str
    value: Any
    version: int
    offset: int


class Groups(msgspec.Struct, frozen=True):
    """``list_groups``: the scopes that hold at least one key, sorted."""

    groups: list[str]


class Page(msgspec.Struct, frozen=True):
    items: list[Entry]
    next_cursor: str | None = None
