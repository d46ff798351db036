"""Which events a follower of the log wants (DESIGN §7). Pure: no SQL, no I/O.

One :class:`Filter` serves every reader of the log — WebSocket and embedded subscriptions, reactions, async
projections, the iii trigger pump and stream server, ``GET /v1/events`` and the CLI — in memory
(:meth:`Filter.matches`, for live events) and in SQL (``ripple.store.sql.events_page``, for catch-up pages).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from ripple.core.events import Event, KindFilter


class Filter(msgspec.Struct, frozen=True):
    """Kind, then any of the scopes (none: every scope), then any of the keys (none: every key).

    ``item_scopes`` adds every state event of those scopes, whatever the rest says: a stream group's stored items
    (``ripple.core.names``), which ``/v1/streams/{stream}/{group}`` delivers along with the group's sends.
    """

    kind: KindFilter = "state"
    scopes: frozenset[str] = frozenset()
    keys: frozenset[str] = frozenset()
    item_scopes: frozenset[str] = frozenset()

    @classmethod
    def of(cls, kind: KindFilter = "state", scopes: Iterable[str] | None = None,
           keys: Iterable[str] | None = None) -> Filter:
        return cls(kind, frozenset(scopes or ()), frozenset(keys or ()))

    def matches(self, event: Event) -> bool:
        return (
            (self.kind == "all" or event.kind == self.kind)
            and (not self.scopes or event.scope in self.scopes)
            and (not self.keys or event.key in self.keys)
        ) or (event.kind == "state" and event.scope in self.item_scopes)


EVERYTHING = Filter("all")
