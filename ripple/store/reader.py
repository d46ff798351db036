"""Reads on read-only connections (aiosqlite), so they never block the writer.

Python's ``sqlite3`` does not begin a transaction on SELECT, so every read made of more than one statement runs
inside an explicit ``BEGIN`` … ``COMMIT`` (DESIGN §13, "Read snapshots").

Fair reads: each class of read has its own connections, so no class can starve another. Point lookups (a key now or
at an offset) run on a loop-owned connection; log reads (``read_events``, subscription catch-up pages) take the
``log`` pool; state ranges (list pages, scope snapshots, scope names) take the ``state`` pool. Eight clients looping
big list pages queue behind each other on the ``state`` pool while health (no I/O), point reads and log reads go on
(``tests/http/test_fair_reads.py``; figures in ``bench/time_travel.py``).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import builtins
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import aiosqlite

from ripple.core.events import Entry, Event, Page
from ripple.core.filter import Filter
from ripple.errors import BadRequestError
from ripple.store import sql
from ripple.store.sqlite import connect_reader, decode_json, rows_to_events, uri


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


async def _end_transaction(conn: aiosqlite.Connection) -> None:
    try:
        await conn.execute("COMMIT")
    except sqlite3.OperationalError:
        pass  # no transaction was open (BEGIN itself failed)


Pool = Literal["state", "log"]


class Reader:
    """Pools of read-only connections, one per class of read, and the queries that run on them."""

    def __init__(self, path: str | os.PathLike[str], size: int = 4, log_size: int = 2) -> None:
        self.path = path
        self.size = size
        self.log_size = log_size
        self._pools: dict[Pool, asyncio.Queue[aiosqlite.Connection]] = {
            "state": asyncio.Queue(), "log": asyncio.Queue()
        }
        self._all: list[aiosqlite.Connection] = []
        self._point: sqlite3.Connection | None = None

    async def open(self) -> None:
        sizes: tuple[tuple[Pool, int], ...] = (("state", self.size), ("log", self.log_size))
        for pool, size in sizes:
            for _ in range(size):
                conn = await aiosqlite.connect(uri(self.path, "ro"), uri=True, isolation_level=None)
                await conn.execute("PRAGMA busy_timeout=10000")
                await conn.execute("PRAGMA query_only=1")
                self._all.append(conn)
                self._pools[pool].put_nowait(conn)
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
    async def connection(self, pool: Pool = "state") -> AsyncIterator[aiosqlite.Connection]:
        """A pooled connection of one class (``state``: ranges of the state; ``log``: pages of the log)."""
        queue = self._pools[pool]
        conn = await queue.get()
        try:
            yield conn
        finally:
            queue.put_nowait(conn)

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
        row = await self._lookup(sql.SELECT_KEY, (scope, key))
        return None if row is None else Entry(key, decode_json(row[0]), row[1], row[2])

    async def entry_at(self, scope: str, key: str, at: int) -> Entry | None:
        row = await self._lookup(sql.SELECT_KEY_AT, (scope, key, at))
        if row is None or row[3] == "deleted":
            return None
        return Entry(key, decode_json(row[0]), row[1], row[2])

    async def list(self, scope: str, *, limit: int, cursor: str | None, at: int | None) -> Page:
        after = decode_cursor(cursor) if cursor else 0
        async with self.connection() as conn:
            if at is None:
                rows = await conn.execute_fetchall(sql.LIST_SCOPE, (scope, after, limit + 1))
            else:
                rows = await conn.execute_fetchall(
                    sql.LIST_SCOPE_AT, sql.list_scope_at_params(scope, at, after, limit + 1)
                )
        rows = list(rows)
        more = len(rows) > limit
        rows = rows[:limit]
        items = [Entry(r[0], decode_json(r[1]), r[2], r[3]) for r in rows]
        return Page(items, encode_cursor(rows[-1][4]) if more and rows else None)

    async def list_groups(self) -> builtins.list[str]:
        async with self.connection() as conn:
            rows = await conn.execute_fetchall(sql.LIST_GROUPS)
        return [r[0] for r in rows]

    async def read_events(self, f: Filter, after: int, limit: int, *, upto: int | None = None) -> builtins.list[Event]:
        """One page of the log: events ``f`` matches in ``(after, upto]``, in offset order."""
        query, params = sql.events_page(f, after, upto, limit)
        async with self.connection("log") as conn:
            rows = await conn.execute_fetchall(query, params)
        return rows_to_events(rows)

    async def earliest(self) -> int:
        """The first offset still in the log (1 when nothing was ever compacted)."""
        async with self.connection("log") as conn:
            rows = list(await conn.execute_fetchall(sql.EARLIEST))
        return int(rows[0][0])
