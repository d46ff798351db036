"""The current-state fold: what the log says every key holds. Pure; used by verify and the property tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from ripple.core.events import Event


class FoldedKey(msgspec.Struct, frozen=True):
    value: Any
    version: int
    last_seq: int
    created_seq: int


StateMap = dict[tuple[str, str], FoldedKey]


def fold_event(state: StateMap, event: Event) -> None:
    """Apply one event to ``state`` in place. Stream events change no state."""
    if event.kind != "state":
        return
    k = (event.scope, event.key)
    if event.event_type == "deleted":
        state.pop(k, None)
        return
    previous = state.get(k)
    created = event.offset if previous is None else previous.created_seq
    state[k] = FoldedKey(event.new_value, event.version, event.offset, created)


def fold_state(events: Iterable[Event]) -> StateMap:
    state: StateMap = {}
    for event in events:
        fold_event(state, event)
    return state
