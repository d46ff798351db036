"""Reads on read-only connections (aiosqlite), so they never block the writer.

Python's ``sqlite3`` does not begin a transaction on SELECT, so every read made of more than one statement runs
inside an explicit ``BEGIN`` … ``COMMIT`` (DESIGN §13, "Read snapshots").
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

from ripple.core.events import Entry, Event, KindFilter, Page
from ripple.errors import BadRequestError
from ripple.store.sqlite import EVENT_COLUMNS, connect_reader, decode_json, row_to_event, uri


def encode_cursor(created_seq: int) -> str:
    return base64.urlsafe_b64encode(f"c{created_seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("c"):
            raise ValueError(cursor)
        value = int(text[1:])
        if value < 0:
            raise ValueError(cursor)
        return value
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequestError(f"invalid cursor {cursor!r}", detail={"cursor": cursor}) from None


def events_filter(
    after: int,
    *,
    kind: KindFilter | None,
    scopes: Sequence[str] | None,
    keys: Sequence[str] | None,
    upto: int | None = None,
    item_scopes: Sequence[str] | None = None,
) -> tuple[str, list[Any]]:
    """The WHERE clause shared by every log read (API, catch-up, CLI). ``item_scopes``: also every state event of
    these scopes, whatever the other filters say (see ``ripple.subscriptions.cursor.Filter``)."""
    where: list[str] = ["seq > ?"]
    params: list[Any] = [after]
    if upto is not None:
        where.append("seq <= ?")
        params.append(upto)
    wanted: list[str] = []
    wanted_params: list[Any] = []
    if kind is not None and kind != "all":
        wanted.append("kind = ?")
        wanted_params.append(kind)
    if scopes:
        wanted.append(f"scope IN ({','.join('?' * len(scopes))})")
        wanted_params.extend(scopes)
    if keys:
        wanted.append(f"key IN ({','.join('?' * len(keys))})")
        wanted_params.extend(keys)
    if item_scopes:
        base = " AND ".join(wanted) or "1=1"
        where.append(f"(({base}) OR (kind = 'state' AND scope IN ({','.join('?' * len(item_scopes))})))")
        params.extend([*wanted_params, *item_scopes])
    else:
        where.extend(wanted)
        params.extend(wanted_params)
    return " AND ".join(where), params


_LIST_AT = """
SELECT e.key, e.new_value, e.version, e.seq,
       (SELECT max(c.seq) FROM events c
         WHERE c.scope = e.scope AND c.key = e.key AND c.kind = 'state' AND c.event_type = 'created'
           AND c.seq <= e.seq) AS created
  FROM events e
 WHERE e.scope = ? AND e.kind = 'state' AND e.seq <= ? AND e.event_type != 'deleted'
   AND e.seq = (SELECT max(m.seq) FROM events m
                 WHERE m.scope = e.scope AND m.key = e.key AND m.kind = 'state' AND m.seq <= ?)
"""


async def _end_transaction(conn: aiosqlite.Connection) -> None:
    try:
        await conn.execute("COMMIT")
    except sqlite3.OperationalError:
        pass  # no transaction was open (BEGIN itself failed)


class Reader:
    """A pool of read-only connections and the queries that run on them."""

    def __init__(self, path: str | os.PathLike[str], size: int = 4) -> None:
        self.path = path
        self.size = size
        self._pool: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._all: list[aiosqlite.Connection] = []
        self._point: sqlite3.Connection | None = None

    async def open(self) -> None:
        for _ in range(self.size):
            conn = await aiosqlite.connect(uri(self.path, "ro"), uri=True, isolation_level=None)
            await conn.execute("PRAGMA busy_timeout=10000")
            await conn.execute("PRAGMA query_only=1")
            self._all.append(conn)
            self._pool.put_nowait(conn)
        # Point lookups (one row by primary key or index seek) run on the event loop: the SELECT costs microseconds,
        # while a hop to a pooled connection's thread costs far more and queues behind other reads. A short busy
        # timeout keeps the loop from ever waiting on a lock; then the lookup goes to the pool instead.
        self._point = connect_reader(self.path)
        self._point.execute("PRAGMA busy_timeout=50")
        self._point.execute("PRAGMA query_only=1")

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()
        self._all.clear()
        if self._point is not None:
            self._point.close()
            self._point = None

    async def _lookup(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """One row, read on the loop; fetchall exhausts the statement so no read snapshot stays open."""
        if self._point is not None:
            try:
                rows = self._point.execute(sql, params).fetchall()
                return rows[0] if rows else None
            except sqlite3.OperationalError:
                pass  # busy (a checkpoint or recovery holds a lock): take the pool's thread instead
        async with self.connection() as conn:
            found = list(await conn.execute_fetchall(sql, params))
        return tuple(found[0]) if found else None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = await self._pool.get()
        try:
            yield conn
        finally:
            self._pool.put_nowait(conn)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[aiosqlite.Connection]:
        """A connection inside one read transaction: every statement sees the same snapshot."""
        async with self.connection() as conn:
            try:
                await conn.execute("BEGIN")
                yield conn
            finally:
                # aiosqlite runs a connection's requests in order, so this END is queued after the BEGIN even when
                # the caller was cancelled while BEGIN ran: the pool never hands out a connection stuck in an old
                # snapshot.
                await asyncio.shield(_end_transaction(conn))

    # -- queries

    async def entry(self, scope: str, key: str) -> Entry | None:
        row = await self._lookup("SELECT value, version, last_seq FROM state WHERE scope = ? AND key = ?", (scope, key))
        return None if row is None else Entry(key, decode_json(row[0]), row[1], row[2])

    async def entry_at(self, scope: str, key: str, at: int) -> Entry | None:
        row = await self._lookup(
            "SELECT new_value, version, seq, event_type FROM events WHERE scope = ? AND key = ? "
            "AND kind = 'state' AND seq <= ? ORDER BY seq DESC LIMIT 1",
            (scope, key, at),
        )
        if row is None or row[3] == "deleted":
            return None
        return Entry(key, decode_json(row[0]), row[1], row[2])

    async def list(self, scope: str, *, limit: int, cursor: str | None, at: int | None) -> Page:
        after = decode_cursor(cursor) if cursor else 0
        async with self.connection() as conn:
            if at is None:
                rows = await conn.execute_fetchall(
                    "SELECT key, value, version, last_seq, created_seq FROM state "
                    "WHERE scope = ? AND created_seq > ? ORDER BY created_seq LIMIT ?",
                    (scope, after, limit + 1),
                )
            else:
                rows = await conn.execute_fetchall(
                    f"SELECT * FROM ({_LIST_AT}) WHERE created > ? ORDER BY created LIMIT ?",
                    (scope, at, at, after, limit + 1),
                )
        rows = list(rows)
        more = len(rows) > limit
        rows = rows[:limit]
        items = [Entry(r[0], decode_json(r[1]), r[2], r[3]) for r in rows]
        return Page(items, encode_cursor(rows[-1][4]) if more and rows else None)

    async def list_groups(self) -> builtins.list[str]:
        async with self.connection() as conn:
            rows = await conn.execute_fetchall("SELECT DISTINCT scope FROM state ORDER BY scope")
        return [r[0] for r in rows]

    async def read_events(
        self,
        after: int,
        limit: int,
        *,
        kind: KindFilter | None = None,
        scopes: Sequence[str] | None = None,
        keys: Sequence[str] | None = None,
        upto: int | None = None,
    ) -> builtins.list[Event]:
        where, params = events_filter(after, kind=kind, scopes=scopes, keys=keys, upto=upto)
        async with self.connection() as conn:
            rows = await conn.execute_fetchall(
                f"SELECT {EVENT_COLUMNS} FROM events WHERE {where} ORDER BY seq LIMIT ?", (*params, limit)
            )
        return [row_to_event(r) for r in rows]

    async def earliest(self) -> int:
        """The first offset still in the log (1 when nothing was ever trimmed)."""
        async with self.connection() as conn:
            rows = await conn.execute_fetchall("SELECT min(seq) FROM events")
        row = next(iter(rows), None)
        return int(row[0]) if row and row[0] is not None else 1
