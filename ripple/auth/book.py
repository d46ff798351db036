"""The server's view of the ``tokens`` table: lookups, revocation and failed-attempt limits (DESIGN §15).

The table is small and written by another process (``ripple token create/revoke``), so the server keeps all of it in
memory and reads it again every ``refresh_seconds`` (default 1 s) from its own read-only connection. A token the
server does not know makes it read the table once more before refusing (reads are shared: one at a time, each
answering every request that arrived before it started), so a token works as soon as ``ripple token create``
returns; failed attempts are rate-limited, which bounds these reads too. After each read the book tells its listeners,
which end the WebSocket sessions of tokens that were revoked or expired since: revocation takes effect within about
one refresh interval everywhere.

Failed attempts (a wrong, expired or revoked token) are limited per client address with a token bucket: a burst of
``burst`` failures, then one more every ``1 / per_second`` seconds. An address over its budget gets
:class:`~ripple.errors.RateLimitedError` (429 with ``Retry-After``) for every token it presents — valid or not, so a
guesser learns nothing — until the bucket refills.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ripple.auth.grants import Identity
from ripple.auth.tokens import now_ms, read_tokens, token_hash
from ripple.errors import RateLimitedError, UnauthorizedError
from ripple.store.backend import connect_reader

log = logging.getLogger("ripple.auth")

DEFAULT_REFRESH_SECONDS = 1.0
MAX_TRACKED_ADDRESSES = 10_000

NO_TOKEN = "a token is required: send Authorization: Bearer <token> (on a WebSocket also ?token=<token>)"
BAD_TOKEN = "the token is not valid (it is wrong, expired or revoked)"


class FailureLimiter:
    """Failed token attempts per client address: a token bucket of ``burst`` that refills ``per_second``."""

    def __init__(self, burst: int = 20, per_second: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.per_second = per_second
        self.clock = clock
        self._buckets: collections.OrderedDict[str, tuple[float, float]] = collections.OrderedDict()

    def _level(self, address: str) -> float:
        found = self._buckets.get(address)
        if found is None:
            return float(self.burst)
        level, at = found
        return min(float(self.burst), level + (self.clock() - at) * self.per_second)

    def retry_after(self, address: str) -> int | None:
        """Seconds until ``address`` may try again, or ``None`` if it may try now."""
        level = self._level(address)
        if level >= 1.0:
            return None
        return max(1, math.ceil((1.0 - level) / self.per_second))

    def failed(self, address: str) -> None:
        self._buckets[address] = (self._level(address) - 1.0, self.clock())
        self._buckets.move_to_end(address)
        while len(self._buckets) > MAX_TRACKED_ADDRESSES:
            self._buckets.popitem(last=False)


class _Known:
    """One row of the table as the server uses it."""

    __slots__ = ("digest", "expires_ts", "identity", "revoked")

    def __init__(self, digest: str, identity: Identity, revoked: bool, expires_ts: int | None) -> None:
        self.digest, self.identity, self.revoked, self.expires_ts = digest, identity, revoked, expires_ts

    def valid(self, now: int) -> bool:
        return not self.revoked and (self.expires_ts is None or self.expires_ts > now)


class TokenBook:
    """Authenticates tokens against the database's ``tokens`` table; see the module docstring."""

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        *,
        limiter: FailureLimiter | None = None,
        refresh_seconds: float = DEFAULT_REFRESH_SECONDS,
    ) -> None:
        self.db_path = os.fspath(db_path)
        self.limiter = limiter or FailureLimiter()
        self.refresh_seconds = refresh_seconds
        self.listeners: list[Callable[[], None]] = []
        self._known: dict[str, _Known] = {}
        self._read_started = -math.inf
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ripple-tokens")
        self._conn: sqlite3.Connection | None = None
        self._reloading: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._refresh_loop(), name="ripple-token-refresh")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_conn)
        self._thread.shutdown(wait=True)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- reading the table

    def _read(self) -> dict[str, _Known]:
        if self._conn is None:
            self._conn = connect_reader(self.db_path)
        known = {}
        for digest, record in read_tokens(self._conn).items():
            identity = record.identity(digest)
            known[digest] = _Known(digest, identity, record.revoked_ts is not None, record.expires_ts)
        return known

    async def reload(self) -> None:
        """Read the table now (concurrent callers share one read), then tell the listeners."""
        if self._reloading is not None:
            await asyncio.shield(self._reloading)
            return
        loop = asyncio.get_running_loop()
        self._reloading = fut = loop.create_future()
        try:
            self._read_started = time.monotonic()
            self._known = await loop.run_in_executor(self._thread, self._read)
        finally:
            self._reloading = None
            fut.set_result(None)
        for listener in list(self.listeners):
            try:
                listener()
            except Exception:
                log.exception("token listener failed")

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)  # the documented refresh interval
            try:
                await self.reload()
            except sqlite3.Error as exc:
                log.warning("reading the tokens table failed: %s", exc)

    async def _read_since(self, since: float) -> None:
        """Return once a read of the table that started at or after ``since`` has finished."""
        while self._read_started < since:
            if self._reloading is not None:
                await asyncio.shield(self._reloading)
            else:
                await self.reload()

    # -- checking

    async def authenticate(self, token: str | None, address: str | None) -> Identity:
        """The identity of ``token``; raises :class:`UnauthorizedError` or :class:`RateLimitedError`.

        The same error (and message) for a wrong, expired or revoked token: nothing tells them apart.
        """
        if token is None:
            raise UnauthorizedError(NO_TOKEN)
        where = address or "?"
        retry = self.limiter.retry_after(where)
        if retry is not None:
            raise RateLimitedError(f"too many failed token attempts from this address; retry in {retry} s",
                                   retry_after=retry, detail={"retry_after": retry})
        digest = token_hash(token)
        known = self._known.get(digest)
        if known is None:  # created a moment ago? read the table once more, from after this request arrived
            await self._read_since(time.monotonic())
            known = self._known.get(digest)
        if known is None or not hmac.compare_digest(known.digest, digest) or not known.valid(now_ms()):
            self.limiter.failed(where)
            raise UnauthorizedError(BAD_TOKEN)
        return known.identity

    def is_current(self, identity: Identity) -> bool:
        """Is the token behind ``identity`` still valid (not revoked, not expired, still in the table)?"""
        if identity.token_id is None:
            return True
        known = self._known.get(identity.token_id)
        return known is not None and known.valid(now_ms())
