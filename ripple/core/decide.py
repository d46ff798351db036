"""What a command does to a key: old state + command → change (or nothing). Pure, no I/O.

The writer calls these against the key's current row before it writes anything, so a rejected command never
touches SQL and never consumes an offset (DESIGN §13, "Gapless offsets under failure").
"""

from __future__ import annotations

from typing import Any

import msgspec

from ripple.core.events import Delete, OpError, Set, Update
from ripple.core.ops import apply_ops
from ripple.core.validate import encode_value
from ripple.errors import PreconditionFailedError, UpdateRejectedError

_decode = msgspec.json.Decoder().decode


class KeyState(msgspec.Struct):
    """A key's current row in the ``state`` table."""

    raw: str | bytes
    version: int
    last_seq: int
    created_seq: int

    def value(self) -> Any:
        return _decode(self.raw)


class Change(msgspec.Struct):
    """One state event before the writer gives it an offset."""

    scope: str
    key: str
    op: str
    event_type: str
    version: int
    old_raw: str | bytes | None
    new_raw: str | bytes | None
    old_value: Any
    new_value: Any
    errors: list[OpError] = []


def check_expected_offset(expected: int | None, current: KeyState | None, scope: str, key: str) -> None:
    """Optimistic concurrency on the key's last offset; a missing key matches only 0 (DESIGN §4)."""
    if expected is None:
        return
    actual = current.last_seq if current is not None else 0
    if expected != actual:
        raise PreconditionFailedError(
            f"expected the last offset of {scope}/{key} to be {expected}, but it is {actual}",
            detail={"scope": scope, "key": key, "expected_offset": expected, "actual_offset": actual},
        )


def _written(
    scope: str, key: str, op: str, current: KeyState | None, new_raw: bytes, new_value: Any
) -> Change:
    if current is None:
        return Change(scope, key, op, "created", 1, None, new_raw, None, new_value)
    return Change(
        scope, key, op, "updated", current.version + 1, current.raw, new_raw, current.value(), new_value
    )


def decide_set(cmd: Set, raw: bytes, current: KeyState | None) -> Change:
    """``raw`` is the command's value, already validated and encoded by the caller."""
    check_expected_offset(cmd.expected_offset, current, cmd.scope, cmd.key)
    return _written(cmd.scope, cmd.key, "set", current, raw, _decode(raw))


def decide_update(cmd: Update, current: KeyState | None, max_value_bytes: int) -> Change:
    check_expected_offset(cmd.expected_offset, current, cmd.scope, cmd.key)
    old_value = current.value() if current is not None else None
    new_value, failures = apply_ops(old_value, cmd.ops)
    errors = [OpError(i, code, message) for i, code, message in failures]
    if len(errors) == len(cmd.ops):
        what = "the update has no ops" if not cmd.ops else "every op of the update failed"
        raise UpdateRejectedError(
            f"{what}; nothing was written to {cmd.scope}/{cmd.key}", [msgspec.to_builtins(e) for e in errors]
        )
    new_raw = encode_value(new_value, max_value_bytes)
    change = _written(cmd.scope, cmd.key, "update", current, new_raw, new_value)
    change.errors = errors
    return change


def decide_delete(cmd: Delete, current: KeyState | None) -> Change | None:
    """A delete of a missing key changes nothing and appends nothing (DESIGN §2)."""
    check_expected_offset(cmd.expected_offset, current, cmd.scope, cmd.key)
    if current is None:
        return None
    return Change(cmd.scope, cmd.key, "delete", "deleted", 0, current.raw, None, current.value(), None)
