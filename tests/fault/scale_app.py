"""The app of tests/fault/test_scale_out.py: one durable reaction that copies every write of scope ``a`` to scope
``copies`` (key ``<key>@<offset>``), so the test can count how often each event was handled across node kills."""

from __future__ import annotations

from ripple import ChangeEvent, Store, Writes


async def copy(event: ChangeEvent, writes: Writes) -> None:
    writes.set("copies", f"{event.key}@{event.offset}", event.offset)


def setup(store: Store) -> None:
    store.on_change("a", copy, name="copy-a", start="beginning")
