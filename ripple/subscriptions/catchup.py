"""Reading the log for a subscription: catch-up pages and snapshots, each in one short read transaction.

A page is one ``SELECT`` (SQLite runs a single statement in its own read transaction) capped at a fixed upper offset,
never beyond the store's head; a snapshot is ``BEGIN`` · S = max(seq) · the matching state rows · ``COMMIT``
(DESIGN §13, "Read snapshots"). Rows come back with their JSON columns as stored text so that frames can splice them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ripple.errors import OffsetOutOfRangeError
from ripple.store.reader import events_filter
from ripple.store.sqlite import EVENT_COLUMNS
from ripple.subscriptions.cursor import Filter

if TYPE_CHECKING:
    from ripple.store.store import Store


class Page:
    """Rows after ``after`` up to ``covered``: every matching event in (after, covered] is in ``rows``."""

    __slots__ = ("covered", "rows")

    def __init__(self, rows: list[Any], covered: int) -> None:
        self.rows = rows
        self.covered = covered


async def read_page(store: Store, f: Filter, after: int, upto: int, limit: int) -> Page:
    where, params = events_filter(
        after, kind=f.kind, scopes=sorted(f.scopes) or None, keys=sorted(f.keys) or None, upto=upto
    )
    async with store.reader.connection() as conn:
        cur = await conn.execute(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY seq LIMIT ?", (*params, limit)
        )
        rows = list(await cur.fetchall())
    covered = upto if len(rows) < limit else int(rows[-1][0])
    return Page(rows, covered)


async def read_snapshot(store: Store, f: Filter) -> tuple[int, list[Any]]:
    """The matching keys' current rows ``(scope, key, value, version, last_seq)`` and their offset S."""
    where = ["1=1"]
    params: list[Any] = []
    if f.scopes:
        where.append(f"scope IN ({','.join('?' * len(f.scopes))})")
        params.extend(sorted(f.scopes))
    if f.keys:
        where.append(f"key IN ({','.join('?' * len(f.keys))})")
        params.extend(sorted(f.keys))
    async with store.reader.snapshot() as conn:
        cur = await conn.execute("SELECT coalesce(max(seq), 0) FROM events")
        row = await cur.fetchone()
        offset = int(row[0]) if row else 0
        rows: list[Any] = []
        if f.kind != "stream":
            cur = await conn.execute(
                "SELECT scope, key, value, version, last_seq FROM state "
                f"WHERE {' AND '.join(where)} ORDER BY scope, created_seq",
                params,
            )
            rows = list(await cur.fetchall())
    return offset, rows


async def check_after(store: Store, after: int) -> int:
    """Refuse a resume point outside [earliest - 1, head]; return ``earliest``."""
    earliest = await store.earliest()
    head = store.head
    if after > head:
        raise OffsetOutOfRangeError(
            f"after={after} is beyond the head ({head})", detail={"after": after, "head": head, "earliest": earliest}
        )
    if after < earliest - 1:
        raise OffsetOutOfRangeError(
            f"after={after} is older than the earliest offset kept ({earliest})",
            detail={"after": after, "head": head, "earliest": earliest},
        )
    return earliest
