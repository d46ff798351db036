"""Reading the log for a subscription: catch-up pages and snapshots, each in one short read transaction.

A page is one ``SELECT`` (SQLite runs a single statement in its own read transaction) capped at a fixed upper offset,
never beyond the store's head; a snapshot is ``BEGIN`` · S = max(seq) · the matching state rows · ``COMMIT``
(DESIGN §13, "Read snapshots"). Rows come back with their JSON columns as stored text so that frames can splice them.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ripple.core.events import KindFilter
from ripple.core.filter import Filter
from ripple.errors import OffsetOutOfRangeError
from ripple.store import sql

if TYPE_CHECKING:
    from ripple.store.store import Store


class Page:
    """Rows after ``after`` up to ``covered``: every matching event in (after, covered] is in ``rows``."""

    __slots__ = ("covered", "rows")

    def __init__(self, rows: list[Any], covered: int) -> None:
        self.rows = rows
        self.covered = covered


class JoinedPage:
    """Every matching event in (after, ``covered``]: ``count`` event JSON objects joined by ``sql.EVENT_SEPARATOR``."""

    __slots__ = ("count", "covered", "joined")

    def __init__(self, count: int, joined: bytes, covered: int) -> None:
        self.count = count
        self.joined = joined
        self.covered = covered


async def read_page(store: Store, f: Filter, after: int, upto: int, limit: int) -> Page:
    """Rows ``EVENT_COLUMNS`` after ``after``, up to ``upto``."""
    query, params = sql.events_page(f, after, upto, limit)
    async with store.reader.connection("log") as conn:
        # One hop (execute + fetch all): a subscriber cancelled mid-read must not leave a half-read statement on a
        # pooled connection — it would hold that connection's read snapshot open and later reads would see stale data.
        rows = list(await conn.execute_fetchall(query, params))
    # A compaction may have removed events of this range while it was read: the floor moves before that COMMIT, so
    # a page that could have missed them is refused here (offset_out_of_range) instead of skipping them silently.
    store.check_read(after, "after", f.kind)
    covered = upto if len(rows) < limit else int(rows[-1][0])
    return Page(rows, covered)


async def read_joined_page(store: Store, f: Filter, after: int, upto: int, limit: int) -> JoinedPage:
    """Like :func:`read_page`, as the event JSON that SQLite builds and joins (``sql.events_json_page``): a page
    costs Python one row, however many events it holds."""
    query, params = sql.events_json_page(f, after, upto, limit)
    async with store.reader.connection("log") as conn:
        rows = list(await conn.execute_fetchall(query, params))  # one hop, as in read_page
    store.check_read(after, "after", f.kind)  # as in read_page: a compaction may have cut this range meanwhile
    count, last, joined = rows[0]
    covered = upto if count < limit else int(last)
    return JoinedPage(count, joined or b"", covered)


async def read_snapshot(store: Store, f: Filter) -> tuple[int, list[Any]]:
    """The matching keys' current rows ``(scope, key, value, version, last_seq)`` and their offset S."""
    # Shielded: a subscriber cancelled between BEGIN and COMMIT must not leave a pooled connection in a transaction.
    return await asyncio.shield(_read_snapshot(store, f))


async def _read_snapshot(store: Store, f: Filter) -> tuple[int, list[Any]]:
    where = ["1=1"]
    params: list[Any] = []
    sql.names_where(f, where, params)
    async with store.reader.snapshot() as conn:
        head_rows = list(await conn.execute_fetchall(sql.HEAD))
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


def check_after_range(after: int, *, earliest: int, head: int, option: str = "after=") -> None:
    """The one rule for a resume point: it must lie in [earliest - 1, head], or ``OffsetOutOfRangeError`` (400).

    Beyond the head, a reader would silently skip every event written up to it; before the earliest offset kept,
    events it asked for are gone. ``option`` names the parameter as the caller's user wrote it (``--after `` on the
    command line).
    """
    detail = {"after": after, "earliest": earliest, "head": head}
    if after > head:
        raise OffsetOutOfRangeError(f"{option}{after} is beyond the head ({head})", detail=detail)
    if after < earliest - 1:
        raise OffsetOutOfRangeError(f"{option}{after} is older than the earliest offset kept ({earliest})",
                                    detail=detail)


async def check_after(store: Store, after: int, kind: KindFilter = "state") -> int:
    """Refuse a resume point outside [earliest - 1, head]; return ``earliest`` (for followers of stream events, the
    stream floor: stream events may be kept for less time than state events)."""
    store.check_open()
    await store.catch_up_to(after)
    earliest = store.log_floor.for_kind(kind)
    check_after_range(after, earliest=earliest, head=store.head)
    return earliest
