"""The log on PostgreSQL (DESIGN §11): the same tables and guarantees as the SQLite file, with several nodes.

Driver: psycopg 3. Its synchronous API in the writer thread behaves like ``sqlite3`` (so ``WriteTxn``, projection
folds and reaction cursor commits run unchanged through :class:`PgConnection`, a thin adapter that rewrites each
statement once with :func:`ripple.store.dialect.to_postgres`), its asynchronous API serves the readers and
``LISTEN``, and ``psycopg[binary]`` installs from PyPI without a compiler. (asyncpg reads faster but is async-only:
the writer thread and the offline-style folds would need a second code path.)

How the promises of the SQLite store carry over to several nodes:

- **Gapless offsets.** Every writing transaction takes one transaction-level advisory lock first
  (:data:`~ripple.store.dialect.APPEND_LOCK`), then reads the head and the keys' rows: appends are serialised across
  nodes, offsets are ``head + 1 …`` with no ``max(seq) + 1`` outside the lock, and since the lock is released after
  the COMMIT is visible, no reader sees N+1 before N. Group commit stays per node.
- **One order for everyone.** A node publishes to its hub only in offset order: its own commit directly when it is
  the next offset, anything else through its tailer (:meth:`PgWriter._tail`), which reads the log after ``head``
  when woken by ``NOTIFY`` (sent inside the writing transaction), by a local commit, or by a poll timer in case a
  notification is lost. The offset is the truth; a notification carries nothing.
- **Acknowledge last.** A caller's write is acknowledged only once this node has published its offset, so a caller
  subscribing with ``after=<its offset>`` never sees "beyond head".
- **One runner per durable reaction / async projection**: see :class:`Lease`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from importlib import resources
from typing import Any

from ripple.core.events import Event
from ripple.errors import NotARippleDatabaseError, RippleError, SchemaVersionError, StorageError
from ripple.migrations import APPLICATION_ID, LATEST_VERSION, statements
from ripple.store import dialect, sql
from ripple.store.reader import Pool, Reader
from ripple.store.sqlite import Durability, row_to_event
from ripple.store.writer import IDEMPOTENCY_TTL_MS, Job, Writer, WriteTxn

log = logging.getLogger("ripple.postgres")

SCHEMES = ("postgresql://", "postgres://")
POLL_SECONDS = 0.5  # the tailer reads the log at least this often, in case a notification was lost
# A node that vanishes without closing its sockets (a partition, a frozen VM): the server ends its sessions once TCP
# keepalive gives up (~25 s), which releases its leases, and a transaction left open holding the append lock is ended
# after IDLE_IN_TXN (no group takes that long: its statements run back to back).
SESSION_SETTINGS = (
    "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3; "
    "SET idle_in_transaction_session_timeout = '30s'"
)
TAIL_PAGE = 1000


def is_postgres_url(path: object) -> bool:
    return isinstance(path, str) and path.startswith(SCHEMES)


def redact(url: str) -> str:
    """``url`` without its password, for logs and errors."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the dependency is declared; a broken install says so
        raise StorageError("PostgreSQL support needs psycopg 3: pip install 'psycopg[binary]'") from None
    return psycopg


def _as_sqlite_error(exc: Exception) -> sqlite3.Error:
    """psycopg's error as the ``sqlite3`` exception the code written for SQLite handles (one exception tree for the
    writer's retry logic). A lost connection is marked so the writer reopens it instead of retrying on it."""
    psycopg = _psycopg()
    message = f"{type(exc).__name__}: {exc}".strip()
    if isinstance(exc, psycopg.IntegrityError):
        error: sqlite3.Error = sqlite3.IntegrityError(message)
    elif isinstance(exc, psycopg.OperationalError):
        error = sqlite3.OperationalError(message)
    else:
        error = sqlite3.DatabaseError(message)
    error.connection_lost = isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)  # type: ignore[attr-defined]
    return error


class PgCursor:
    """The part of ``sqlite3.Cursor`` ripple uses."""

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    @property
    def description(self) -> Any:
        return self._cursor.description

    def fetchone(self) -> Any:
        return self._cursor.fetchone() if self._cursor.description is not None else None

    def fetchall(self) -> list[Any]:
        return list(self._cursor.fetchall()) if self._cursor.description is not None else []

    def fetchmany(self, size: int) -> list[Any]:
        return list(self._cursor.fetchmany(size))

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class PgConnection:
    """A synchronous psycopg connection with ``sqlite3.Connection``'s surface: ``execute`` / ``executemany`` with
    SQLite-dialect statements, ``in_transaction``, explicit ``BEGIN``/``SAVEPOINT``/``COMMIT`` (autocommit mode, as
    ripple opens SQLite connections with ``isolation_level=None``)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        #: ``(channel, payload)`` to NOTIFY with the next COMMIT, in the same round trip (the writer sets it).
        self.notify_on_commit: tuple[str, str] | None = None

    @property
    def in_transaction(self) -> bool:
        return bool(self.raw.info.transaction_status != _psycopg().pq.TransactionStatus.IDLE)

    def execute(self, statement: str, params: Sequence[Any] | dict[str, Any] = ()) -> PgCursor:
        text, style = dialect.to_postgres(statement)
        if self.notify_on_commit is not None and text in ("COMMIT", "ROLLBACK"):
            channel, payload = self.notify_on_commit
            self.notify_on_commit = None
            if text == "COMMIT":  # one round trip; without parameters, several statements may go at once
                text = f"NOTIFY {quote_ident(channel)}, '{int(payload)}'; COMMIT"
        try:
            cursor = self.raw.execute(text, dialect.bind(style, params))
        except _psycopg().Error as exc:
            raise _as_sqlite_error(exc) from exc
        return PgCursor(cursor)

    def executemany(self, statement: str, rows: Any) -> PgCursor:
        rows = list(rows)
        if len(rows) == 1:  # a pipeline for one row costs more than a plain execute
            return self.execute(statement, rows[0])
        text, style = dialect.to_postgres(statement)
        cursor = self.raw.cursor()
        try:
            cursor.executemany(text, [dialect.bind(style, row) for row in rows])
        except _psycopg().Error as exc:
            raise _as_sqlite_error(exc) from exc
        return PgCursor(cursor)

    def close(self) -> None:
        self.raw.close()


def connect(url: str, *, durability: Durability = "full") -> PgConnection:
    """A synchronous connection in autocommit mode; ``durability="normal"`` turns off ``synchronous_commit`` (a
    crash of the PostgreSQL server may then lose the last acknowledged transactions, like SQLite's NORMAL)."""
    psycopg = _psycopg()
    try:
        raw = psycopg.connect(url, autocommit=True, application_name="ripple")
    except psycopg.Error as exc:
        raise StorageError(f"cannot connect to {redact(url)}: {exc}") from None
    raw.execute(SESSION_SETTINGS)
    if durability == "normal":
        raw.execute("SET synchronous_commit = off")
    return PgConnection(raw)


class PgAsyncConnection:
    """An asynchronous psycopg connection with the part of ``aiosqlite.Connection`` the readers use."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    async def execute(self, statement: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        """Returns psycopg's async cursor (``await cursor.fetchone()`` / ``fetchall()``, as aiosqlite's)."""
        text, style = dialect.to_postgres(statement)
        try:
            return await self.raw.execute(text, dialect.bind(style, params))
        except _psycopg().Error as exc:
            raise _as_sqlite_error(exc) from exc

    async def execute_fetchall(self, statement: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        text, style = dialect.to_postgres(statement)
        try:
            cursor = await self.raw.execute(text, dialect.bind(style, params))
            return list(await cursor.fetchall())
        except _psycopg().Error as exc:
            raise _as_sqlite_error(exc) from exc

    async def close(self) -> None:
        await self.raw.close()


async def connect_async(url: str) -> PgAsyncConnection:
    psycopg = _psycopg()
    try:
        raw = await psycopg.AsyncConnection.connect(url, autocommit=True, application_name="ripple")
        await raw.execute(SESSION_SETTINGS)
    except psycopg.Error as exc:
        raise StorageError(f"cannot connect to {redact(url)}: {exc}") from None
    return PgAsyncConnection(raw)


# ---- migrations ---------------------------------------------------------------------------------------------------


def _pg_migrations() -> list[tuple[int, str]]:
    """``(schema version, sql)`` of ripple/migrations/postgres/, in order: the first brings an empty schema to its
    version in one step; later ones follow SQLite's numbers."""
    folder = resources.files("ripple.migrations").joinpath("postgres")
    found = sorted((int(entry.name[:4]), entry.read_text("utf-8")) for entry in folder.iterdir()
                   if entry.name.endswith(".sql"))
    return found


def migrate(conn: PgConnection, url: str) -> int:
    """Bring the schema to ``LATEST_VERSION`` under the append lock (several nodes may start at once); returns the
    version found (0 for an empty schema). Refuses a schema with ripple's table names that is not ripple's."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        has_meta = conn.execute("SELECT to_regclass('ripple_schema') IS NOT NULL").fetchone()[0]
        if has_meta:
            app_id, current = conn.execute("SELECT application_id, version FROM ripple_schema").fetchone()
            if app_id != APPLICATION_ID:
                raise NotARippleDatabaseError(f"{redact(url)} holds a ripple_schema table that is not ripple's")
        else:
            if conn.execute("SELECT to_regclass('events') IS NOT NULL").fetchone()[0]:
                raise NotARippleDatabaseError(
                    f"{redact(url)} already has an events table that ripple did not create; it was left untouched")
            current = 0
        if current > LATEST_VERSION:
            raise SchemaVersionError(
                f"{redact(url)} has schema version {current}, newer than this ripple supports ({LATEST_VERSION}); "
                "upgrade ripple", detail={"schema_version": current, "supported": LATEST_VERSION})
        for version, text in _pg_migrations():
            if version <= current:
                continue
            for stmt in statements(text):
                conn.raw.execute(stmt)  # PostgreSQL DDL as written: no dialect rewriting
            if current == 0:
                conn.execute("INSERT INTO ripple_schema (id, application_id, version) VALUES (1, ?, ?)",
                             (APPLICATION_ID, version))
            else:
                conn.execute("UPDATE ripple_schema SET version = ?", (version,))
            current = version
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return int(current)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def channel(conn: PgConnection) -> str:
    """The ``NOTIFY`` channel of the log in ``conn``'s schema."""
    schema = conn.execute("SELECT current_schema()").fetchone()[0]
    return f"ripple_log_{schema}"[:63]


# ---- the writer ---------------------------------------------------------------------------------------------------


class PgWriter(Writer):
    """The SQLite writer's group commit on a PostgreSQL connection, plus the tailer that publishes the log."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self._channel = "ripple_log"
        self._tail_wakeup = asyncio.Event()
        self._pending_acks: list[tuple[int, list[Job]]] = []
        self._acks_drained = asyncio.Event()
        self._tailer: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._backend_pids: set[int] = set()  # this node's write sessions: their notifications need no read

    def _connect(self) -> sqlite3.Connection:
        conn: Any = connect(self.path, durability=self.durability)
        self._backend_pids.add(conn.raw.info.backend_pid)
        return conn  # type: ignore[no-any-return]

    def _open(self) -> int:
        self._conn = self._connect()
        pg: Any = self._conn
        migrate(pg, self.path)
        self._channel = channel(pg)
        head = sql.head(self._conn)
        self._conn.execute(
            "DELETE FROM idempotency WHERE created_ts < ?", (int(time.time() * 1000) - IDEMPOTENCY_TTL_MS,)
        )
        return head

    async def start(self) -> None:
        await super().start()
        self._tailer = asyncio.create_task(self._tail(), name="ripple-pg-tailer")
        self._listener = asyncio.create_task(self._listen(), name="ripple-pg-listener")

    async def close(self, final: Any = None) -> None:
        await super().close(None)
        if self._pending_acks:  # committed: let the tailer publish them before saying so (bounded)
            self._tail_wakeup.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._acks_drained.wait(), 5.0)
        for task in (self._listener, self._tailer):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._listener, self._tailer) if t is not None), return_exceptions=True)
        self._fail_pending_acks(StorageError("this write was committed, but the store closed before this node "
                                             "published it: read it back (its outcome is in the log)"))

    def _head_in_txn(self, conn: sqlite3.Connection) -> int:
        return sql.head(conn)  # read under the append lock: other nodes may have appended since

    def _before_commit(self, txn: WriteTxn) -> None:
        conn: Any = txn.conn
        conn.notify_on_commit = (self._channel, str(txn.head))  # sent with the COMMIT, in its round trip

    @staticmethod
    def _is_io_error(exc: sqlite3.Error) -> bool:
        return bool(getattr(exc, "connection_lost", False))

    def _read_head(self) -> int:
        assert self._conn is not None
        return sql.head(self._conn)

    def _after_io_error(self, jobs: list[Job], exc: sqlite3.Error) -> list[Event]:
        """The connection was lost: reopen it, then learn from the log whether the COMMIT got through (other nodes
        append too, so the head alone does not say: look for this transaction's last event)."""
        log.error("lost the PostgreSQL write connection (%s); reopening it", exc)
        _, txn = self._attempt
        if not self._reopen():
            return self._fail_all(jobs, StorageError(f"PostgreSQL connection lost ({exc}); writes are refused "
                                                     "until it can be reopened"))
        if txn is not None and txn.events and self._committed(txn.events[-1]):
            return txn.events
        if len(jobs) == 1:
            return self._fail_all(jobs, StorageError(f"the database could not write this command: {exc}"))
        return self._one_by_one(jobs)

    def _committed(self, event: Event) -> bool:
        assert self._conn is not None
        row = self._conn.execute("SELECT ts, scope, key, version FROM events WHERE seq = ?",
                                 (event.offset,)).fetchone()
        return row is not None and tuple(row) == (event.ts, event.scope, event.key, event.version)

    # -- acknowledge last: publish in offset order, then resolve the callers

    def _after_commit(self, jobs: list[Job], events: list[Event], seconds: float = 0.0) -> None:
        if events:
            self.stats.committed(len(events), seconds)
        if not events or events[-1].offset <= self.head:  # nothing to publish, or the tailer already did
            self._acknowledge(jobs)
            return
        if events[0].offset == self.head + 1:  # nothing between: publish our own events without reading them back
            self._advance(events)
            self._acknowledge(jobs)
            self._resolve_acks()
            return
        self._pending_acks.append((events[-1].offset, jobs))
        self._acks_drained.clear()
        self._tail_wakeup.set()

    def _resolve_acks(self) -> None:
        if not self._pending_acks:
            return
        ready = [jobs for offset, jobs in self._pending_acks if offset <= self.head]
        self._pending_acks = [(offset, jobs) for offset, jobs in self._pending_acks if offset > self.head]
        for jobs in ready:
            self._acknowledge(jobs)
        if not self._pending_acks:
            self._acks_drained.set()

    def _fail_pending_acks(self, error: RippleError) -> None:
        for _, jobs in self._pending_acks:
            for job in jobs:
                if job.fut is not None and not job.fut.done():
                    job.fut.set_exception(error)
        self._pending_acks = []

    async def wait_for_head(self, offset: int) -> None:
        if offset > self.head:
            self._tail_wakeup.set()  # a read saw a later commit (maybe another node's): catch up now
        await super().wait_for_head(offset)

    async def _listen(self) -> None:
        """Wake the tailer on every notification; reconnect when the connection drops."""
        while True:
            try:
                conn = await connect_async(self.path)
                try:
                    await conn.raw.execute(f"LISTEN {quote_ident(self._channel)}")
                    self._tail_wakeup.set()  # anything committed before LISTEN took effect
                    async for notification in conn.raw.notifies():
                        if notification.pid not in self._backend_pids:  # our own commits publish themselves
                            self._tail_wakeup.set()
                finally:
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("PostgreSQL LISTEN connection failed (%s); the poll timer covers until it is back", exc)
            await asyncio.sleep(POLL_SECONDS)  # sleep-ok: reconnect back-off

    async def _tail(self) -> None:
        """Publish the log after ``head`` in offset order, whoever wrote it."""
        conn: PgAsyncConnection | None = None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tail_wakeup.wait(), POLL_SECONDS)
            self._tail_wakeup.clear()
            try:
                if conn is None:
                    conn = await connect_async(self.path)
                await self._catch_up(conn)
            except asyncio.CancelledError:
                if conn is not None:
                    await conn.close()
                raise
            except Exception as exc:
                log.warning("reading the PostgreSQL log failed (%s); retrying", exc)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
                conn = None

    async def _catch_up(self, conn: PgAsyncConnection) -> None:
        while True:
            after = self.head
            rows = await conn.execute_fetchall(
                f"SELECT {sql.EVENT_COLUMNS} FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (after, TAIL_PAGE))
            events = [row_to_event(r) for r in rows if r[0] > self.head]  # our own commit may have gone first
            if events and events[0].offset != self.head + 1:
                log.error("the PostgreSQL log has a gap after offset %d (next %d); waiting", self.head,
                          events[0].offset)
                return
            if events:
                self._advance(events)
                self._resolve_acks()
            if len(rows) < TAIL_PAGE:
                return


# ---- the readers --------------------------------------------------------------------------------------------------


class PgReader(Reader):
    """The SQLite reader's queries on pools of asynchronous PostgreSQL connections (one pool per class of read, as
    there; point lookups get their own small pool instead of the loop-owned SQLite connection)."""

    def __init__(self, url: str, size: int = 4, log_size: int = 2) -> None:
        super().__init__(url, size=size, log_size=log_size)
        self._pools["point"] = asyncio.Queue()  # type: ignore[index]

    async def open(self) -> None:
        url = str(self.path)
        sizes: tuple[tuple[Any, int], ...] = (("state", self.size), ("log", self.log_size), ("point", 2))
        for pool, size in sizes:
            for _ in range(size):
                conn = await connect_async(url)
                self._all.append(conn)  # type: ignore[arg-type]
                self._pools[pool].put_nowait(conn)  # type: ignore[arg-type]

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()
        self._all.clear()

    async def _lookup(self, statement: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        async with self.connection("point") as conn:  # type: ignore[arg-type]
            found = list(await conn.execute_fetchall(statement, params))
        return tuple(found[0]) if found else None

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[Any]:
        """One REPEATABLE READ transaction: every statement sees the same snapshot."""
        pool: Pool = "state"
        async with self.connection(pool) as conn:
            pg: Any = conn
            try:
                await pg.raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
                yield conn
            finally:
                await asyncio.shield(pg.raw.execute("ROLLBACK"))


# ---- leases: one runner per durable reaction / async projection -----------------------------------------------------

LEASE_RETRY_SECONDS = 1.0  # how often a node without a lease tries to take it (the takeover delay after a death)
LEASE_CHECK_SECONDS = 1.0  # how often the holder checks that its lease connection is alive


class LeaseLost(Exception):
    """The holder found that another node moved what its lease protects (the lease connection was lost)."""


class Lease:
    """A session-level advisory lock held on a dedicated connection: exactly one node runs a durable reaction or an
    async projection at a time. PostgreSQL releases it when the holder's session ends (a clean close, a crash, a
    ``kill -9``: the server sees the socket close), and another node's next try takes it over. The runner resumes
    from the cursor or checkpoint committed in the log's database, so nothing is handled twice: a cursor advance is
    also checked against the runner's own position in the same transaction (fencing), in case a lease was lost
    without the holder noticing yet."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self._conn: PgAsyncConnection | None = None

    async def acquire(self) -> None:
        """Return once the lease is held (tries every ``LEASE_RETRY_SECONDS``)."""
        while True:
            try:
                if self._conn is None:
                    self._conn = await connect_async(self.url)
                rows = await self._conn.execute_fetchall(
                    "SELECT pg_try_advisory_lock(hashtext(current_schema() || '.ripple.lease.' || ?))", (self.name,))
                if rows[0][0]:
                    return
            except (StorageError, sqlite3.Error) as exc:
                log.warning("lease %s: %s; trying again", self.name, exc)
                await self.release()
            await asyncio.sleep(LEASE_RETRY_SECONDS)  # sleep-ok: polling a lock another node holds

    async def watch(self) -> None:
        """Return when the lease's connection is gone (the lock went with it)."""
        assert self._conn is not None
        while True:
            await asyncio.sleep(LEASE_CHECK_SECONDS)  # sleep-ok: a liveness check of the lease connection
            try:
                await self._conn.execute_fetchall("SELECT 1")
            except sqlite3.Error as exc:
                log.error("lease %s lost: %s", self.name, exc)
                return

    async def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()  # ending the session releases the lock
            self._conn = None


async def run_leased(url: str, name: str, body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body()`` while this node holds lease ``name``; when the lease is lost (or ``body`` raises
    :class:`LeaseLost`), stop it and wait to take the lease again. Returns when ``body`` returns."""
    while True:
        lease = Lease(url, name)
        try:
            await lease.acquire()
            log.info("lease %s taken: running it on this node", name)
            run = asyncio.ensure_future(body())
            watch = asyncio.ensure_future(lease.watch())
            try:
                done, _ = await asyncio.wait({run, watch}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (run, watch):
                    task.cancel()
                await asyncio.gather(run, watch, return_exceptions=True)
            if run in done and not run.cancelled():
                try:
                    run.result()
                    return
                except LeaseLost as exc:
                    log.error("lease %s: %s; waiting to take it again", name, exc)
        finally:
            await lease.release()
