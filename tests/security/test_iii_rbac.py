"""What a session of the RBAC worker port may register (docs/iii.md, "The RBAC worker port"; docs/security.md):

- the port's own functions (auth function, middleware, registration hooks) come only from main-port workers: a session
  that registers one of their ids is refused with ``FORBIDDEN``, even once the trusted backend is gone, and the port
  never calls a function a session registered in their place;
- a session opened with a ripple token alone registers functions, triggers and trigger types only with a worker token
  (``--worker``/``--admin``): a read-only token cannot publish a route on the public HTTP-trigger port.

Real servers and raw WebSocket workers speaking the iii protocol."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from ripple import Store
from ripple.auth.book import TokenBook
from ripple.iii.protocol import IIIError
from ripple.iii.rbac import RbacConfig, RbacPort
from ripple.iii.server import IIIServer
from tests.conftest import SECOND
from tests.iii.conftest import RawWorker
from tests.security.conftest import new_token

PORT_FUNCTIONS = RbacConfig(auth_function_id="app::auth", middleware_function_id="app::middleware",
                            on_trigger_type_registration_function_id="app::on-trigger-type")


class Served:
    def __init__(self, server: IIIServer, db: Path) -> None:
        self.server, self.db = server, db
        self.engine = server.engine

    async def until(self, predicate: Callable[[], bool]) -> None:
        await self.engine.wait_until(predicate, 10 * SECOND)


async def serve(tmp_path: Path, config: RbacConfig) -> AsyncIterator[Served]:
    db = tmp_path / "rbac.db"
    async with Store.open(db) as store:
        book = TokenBook(db, refresh_seconds=0.2)
        await book.start()
        server = IIIServer(store, worker_port=0, http_port=0, stream_port=0, call_timeout=5 * SECOND, book=book,
                           rbac=RbacPort(0, config))
        await server.start()
        try:
            yield Served(server, db)
        finally:
            await server.close()
            await book.close()


@pytest.fixture
async def hooked(tmp_path: Path) -> AsyncIterator[Served]:
    async for served in serve(tmp_path, PORT_FUNCTIONS):
        yield served


@pytest.fixture
async def token_only(tmp_path: Path) -> AsyncIterator[Served]:
    async for served in serve(tmp_path, RbacConfig()):
        yield served


def rbac_port(served: Served) -> int:
    assert served.server.rbac_port is not None
    return served.server.rbac_port


async def admitted(served: Served, backend: RawWorker, token: str) -> RawWorker:
    """An RBAC session opened with ``token``, admitted by the backend's auth function (no functions allowed)."""
    opening = asyncio.ensure_future(RawWorker.connect(rbac_port(served), f"/?token={token}"))
    asked = await backend.expect(lambda f: f.get("type") == "invokefunction" and f["function_id"] == "app::auth")
    assert asked["data"]["token"]["name"] == "reader"
    await backend.answer(asked, {"allowed_functions": []})
    return await asyncio.wait_for(opening, 10 * SECOND)


async def test_a_session_cannot_take_over_the_ports_own_functions(hooked: Served) -> None:
    admin = new_token(hooked.db, "backend", admin=True)
    reader = new_token(hooked.db, "reader", scopes=["a:r"])
    functions = hooked.engine.registry.functions
    backend = await RawWorker.connect(hooked.server.worker_port, f"/?token={admin}")
    await backend.register("app::auth")
    await hooked.until(lambda: "app::auth" in functions)
    session = await admitted(hooked, backend, reader)
    await session.register("side::fn")  # an ordinary function: the auth result allows registrations
    await hooked.until(lambda: "side::fn" in functions)

    await backend.close()  # a deploy: the trusted backend is gone for a while
    await hooked.until(lambda: "app::auth" not in functions)
    for reserved in ("app::auth", "app::middleware", "app::on-trigger-type"):
        await session.register(reserved)
        refusal = await session.expect(lambda f: f.get("type") == "error")
        assert refusal["code"] == "FORBIDDEN" and reserved in refusal["message"], refusal
        assert reserved not in functions
    # nobody is admitted without the backend, and the port never calls a session's function as one of its own
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"ws://127.0.0.1:{rbac_port(hooked)}/"):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body)["error"]["code"] == "unauthorized"
    with pytest.raises(IIIError) as not_found:
        await hooked.engine.invoke("side::fn", {}, trusted=True)
    assert not_found.value.code == "function_not_found"
    await session.close()


async def test_a_read_only_token_cannot_publish_routes(token_only: Served) -> None:
    reader = new_token(token_only.db, "reader", scopes=["a:r"])
    worker = new_token(token_only.db, "svc", scopes=["a:rw"], worker=True)
    registry = token_only.engine.registry
    session = await RawWorker.connect(rbac_port(token_only), f"/?token={reader}")
    await session.register("phish::login")
    refusal = await session.expect(lambda f: f.get("type") == "error")
    assert refusal["code"] == "FORBIDDEN" and "may not register functions" in refusal["message"]
    await session.trigger("login-route", "http", "phish::login", {"api_path": "login", "http_method": "POST"})
    result = await session.expect(lambda f: f.get("type") == "triggerregistrationresult")
    assert result["error"]["code"] == "FORBIDDEN"
    await session.send(type="registertriggertype", id="phish.type", description="d")
    await session.register("phish::again")  # frames are handled in order: once this is refused, so was the type
    assert (await session.expect(lambda f: f.get("type") == "error"))["code"] == "FORBIDDEN"
    assert "phish.type" not in registry.trigger_types
    assert "phish::login" not in registry.functions and "login-route" not in registry.triggers
    async with httpx.AsyncClient(timeout=5 * SECOND) as client:
        posted = await client.post(f"http://127.0.0.1:{token_only.server.http_port}/login", json={"password": "x"})
    assert posted.status_code == 404
    # a worker token may register, as it may on the main worker port
    service = await RawWorker.connect(rbac_port(token_only), f"/?token={worker}")
    await service.register("svc::login")
    await service.trigger("svc-route", "http", "svc::login", {"api_path": "svc", "http_method": "POST"})
    await token_only.until(lambda: "svc::login" in registry.functions and "svc-route" in registry.triggers)
    await service.close()
    await session.close()
