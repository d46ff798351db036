"""Reading the log for a subscription: catch-up pages and snapshots, each in one short read transaction.

A page is one ``SELECT`` (SQLite runs a single statement in its own read transaction) capped at a fixed upper offset,
never beyond the store's head; a snapshot is ``BEGIN`` · S = max(seq) · the matching state rows · ``COMMIT``
(DESIGN §13, "Read snapshots"). Rows come back with their JSON columns as stored text so that frames can splice them.
"""

from __future__ import annotations

import asyncio
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


# One event's JSON object built by SQLite from the stored row: the stored JSON columns are spliced as they are, names
# are quoted by json_quote, and the row costs Python one string instead of eleven objects (catch-up is bound by this).
# Same shape and field order as ripple.wire.event_body.
EVENT_JSON = (
    "printf('{\"offset\":%d,\"ts\":%d,\"kind\":%s,\"scope\":%s,\"key\":%s,\"op\":%s,\"event_type\":%s,"
    "\"version\":%d,\"old_value\":%s,\"new_value\":%s,\"meta\":%s}', seq, ts, json_quote(kind), json_quote(scope), "
    "json_quote(key), json_quote(op), json_quote(event_type), version, coalesce(old_value, 'null'), "
    "coalesce(new_value, 'null'), meta)"
)


async def read_page(store: Store, f: Filter, after: int, upto: int, limit: int, *, as_json: bool = False) -> Page:
    """Rows ``EVENT_COLUMNS`` (or ``(seq, event JSON text)`` with ``as_json``) after ``after``, up to ``upto``."""
    columns = f"seq, {EVENT_JSON}" if as_json else EVENT_COLUMNS
    where, params = events_filter(
        after,
        kind=f.kind,
        scopes=sorted(f.scopes) or None,
        keys=sorted(f.keys) or None,
        upto=upto,
        item_scopes=sorted(f.item_scopes) or None,
    )
    # A scope filter reads the (scope, seq) index range in order (migration 0003); the page is capped at `upto`.
    async with store.reader.connection() as conn:
        # One hop (execute + fetch all): a subscriber cancelled mid-read must not leave a half-read statement on a
        # pooled connection — it would hold that connection's read snapshot open and later reads would see stale data.
        rows = list(
            await conn.execute_fetchall(
                f"SELECT {columns} FROM events WHERE {where} ORDER BY seq LIMIT ?", (*params, limit)
            )
        )
    covered = upto if len(rows) < limit else int(rows[-1][0])
    return Page(rows, covered)


async def read_snapshot(store: Store, f: Filter) -> tuple[int, list[Any]]:
    """The matching keys' current rows ``(scope, key, value, version, last_seq)`` and their offset S."""
    # Shielded: a subscriber cancelled between BEGIN and COMMIT must not leave a pooled connection in a transaction.
    return await asyncio.shield(_read_snapshot(store, f))


async def _read_snapshot(store: Store, f: Filter) -> tuple[int, list[Any]]:
    where = ["1=1"]
    params: list[Any] = []
    if f.scopes:
        where.append(f"scope IN ({','.join('?' * len(f.scopes))})")
        params.extend(sorted(f.scopes))
    if f.keys:
        where.append(f"key IN ({','.join('?' * len(f.keys))})")
        params.extend(sorted(f.keys))
    async with store.reader.snapshot() as conn:
        head_rows = list(await conn.execute_fetchall("SELECT coalesce(max(seq), 0) FROM events"))
        offset = int(head_rows[0][0])
        rows: list[Any] = []
        if f.kind != "stream":
            rows = list(
                await conn.execute_fetchall(
                    "SELECT scope, key, value, version, last_seq FROM state "
                    f"WHERE {' AND '.join(where)} ORDER BY scope, created_seq",
                    params,
                )
            )
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
