"""A real ``ripple serve`` stack in the test's event loop — ``create_app`` with security settings, uvicorn with ripple's
guarded HTTP protocol on a shedding socket (ripple.http.connections) — and tokens of every kind."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
import threading
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from examples.todo.api import TodoController
from ripple import Store
from ripple.auth.tokens import create_token, revoke_token
from ripple.http.access import Security
from ripple.http.app import create_app
from ripple.http.boundary import Boundary
from ripple.http.connections import listening_socket
from ripple.http.serve import RippleServer, ServeOptions, config_for
from ripple.offline import open_for_tokens
from tests.conftest import SECOND

T = TypeVar("T")

KINDS = ("none", "wrong", "expired", "revoked", "read", "write", "admin")
GRANTS: dict[str, dict[str, Any]] = {
    "read": {"scopes": ["notes:r", "todos:r", "todo-metrics:r"], "streams": ["live:r"]},
    "write": {"scopes": ["notes:rw", "todos:rw", "todo-metrics:r"], "streams": ["live:rw"]},
    "admin": {"admin": True},
    "expired": {"scopes": ["todos:rw"], "streams": ["live:rw"]},
    "revoked": {"scopes": ["todos:rw"], "streams": ["live:rw"]},
}


def make_tokens(db: Path, prefix: str = "") -> dict[str, str | None]:
    """One token per kind of :data:`KINDS` (``none`` → no token; ``wrong`` → a well-formed unknown one)."""
    conn = open_for_tokens(db)
    try:
        tokens: dict[str, str | None] = {"none": None, "wrong": "rpl_" + secrets.token_urlsafe(32)}
        for kind, grants in GRANTS.items():
            tokens[kind], _ = create_token(conn, f"{prefix}{kind}", **grants)
        conn.execute("UPDATE tokens SET expires_ts = 1 WHERE name = ?", (f"{prefix}expired",))
        revoke_token(conn, f"{prefix}revoked")
    finally:
        conn.close()
    return tokens


def new_token(db: Path, name: str, **grants: Any) -> str:
    conn = open_for_tokens(db)
    try:
        return create_token(conn, name, **grants)[0]
    finally:
        conn.close()


def revoke(db: Path, name: str) -> None:
    conn = open_for_tokens(db)
    try:
        revoke_token(conn, name)
    finally:
        conn.close()


def bearer(token: str | None) -> dict[str, str]:
    return {} if token is None else {"authorization": f"Bearer {token}"}


@dataclass
class Served:
    store: Store
    server: RippleServer
    port: int
    url: str
    db: Path
    tokens: dict[str, str | None] = field(default_factory=dict)

    def client(self, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10 * SECOND, **options)


@asynccontextmanager
async def serving(
    db: Path,
    *,
    auth: bool = False,
    options: ServeOptions | None = None,
    handlers: Sequence[Any] = (TodoController,),
    security: Security | None = None,
    store: Store | None = None,
) -> AsyncIterator[Served]:
    """``ripple serve`` in this event loop: the same app, protocol and socket as the command (port 0)."""
    options = options or ServeOptions(db=str(db), port=0, auth=auth)
    own = store is None
    if store is None:
        store = await Store.open(db)
    try:
        app = create_app(store, route_handlers=list(handlers), security=security or options.security())
        config = config_for(app, options)
        server = RippleServer(config, store)
        task = asyncio.create_task(server.serve(sockets=[listening_socket(config.bind_socket())]))
        ready = asyncio.ensure_future(server.ready.wait())
        done, _ = await asyncio.wait({ready, task}, timeout=10 * SECOND, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            raise RuntimeError(f"the server did not start: {task.exception() if task.done() else 'timeout'}")
        try:
            yield Served(store, server, server.port, f"http://127.0.0.1:{server.port}", db)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 15 * SECOND)
    finally:
        if own:
            await store.close()


def high_limit_security(**boundary: Any) -> Security:
    """``--auth`` with a failure budget no test module exhausts by accident (the limiter has its own test)."""
    return Security(Boundary.for_bind("127.0.0.1", **boundary), auth=True, failure_burst=100_000)


def events_in(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


class BackgroundServer:
    """:func:`serving` on an event loop in a thread, for hypothesis tests (which are synchronous): each example runs
    its coroutine on that loop with :meth:`run`, against one server for the whole module."""

    def __init__(self, db: Path, **options: Any) -> None:
        self.db = db
        self.options = options
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-server-loop", daemon=True)
        self.served: Served | None = None
        self._context: Any = None

    def __enter__(self) -> Served:
        self.thread.start()
        self._context = serving(self.db, **self.options)
        self.served = self.run(self._context.__aenter__())
        return self.served

    def __exit__(self, *exc: object) -> None:
        try:
            self.run(self._context.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(30 * SECOND)
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout * SECOND)
