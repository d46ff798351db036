"""The RBAC worker port (``--iii-rbac-port``) through the published SDKs: sessions from an auth function (a worker
function on the main port, as in iii) and from ripple's tokens, ``expose_functions``, the registration hooks, the
function prefix and the middleware.

The operator's functions run on a PyPI SDK worker on the main port; RBAC clients are PyPI SDK workers (in process)
and one npm ``iii-sdk`` 0.22.1 script, each connecting with its own headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import websockets
from iii import InvocationError  # type: ignore[import-untyped]
from iii.trigger import TriggerConfig, TriggerHandler  # type: ignore[import-untyped]
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ripple import Store
from ripple.auth.book import TokenBook
from ripple.iii.rbac import RbacConfig, RbacPort, parse_filter
from ripple.iii.server import IIIServer
from tests.conftest import SECOND
from tests.iii.sdk import Inbox, PyWorker, node_script, py_worker, registered
from tests.security.conftest import bearer, new_token, revoke

# PyPI iii-sdk 0.25 deprecates register_trigger(_type) for observe(), which needs engine features ripple does not offer.
pytestmark = [pytest.mark.filterwarnings("ignore:register_trigger is deprecated:DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:register_trigger_type is deprecated:DeprecationWarning")]

EXPOSE = tuple(parse_filter(f) for f in ('match("api::*")', "engine::functions::list",
                                         '{"metadata": {"public": true}}'))
HOOKED = RbacConfig(
    auth_function_id="op::auth",
    expose_functions=EXPOSE,
    middleware_function_id="op::middleware",
    on_function_registration_function_id="op::on-function",
    on_trigger_registration_function_id="op::on-trigger",
    on_trigger_type_registration_function_id="op::on-trigger-type",
)
ROLES: dict[str, dict[str, Any]] = {
    "admin": {"allowed_functions": ["internal::allowed", "state::get"], "allow_trigger_type_registration": True,
              "context": {"user": "ann"}},
    "reader": {"forbidden_functions": ["api::echo"], "context": {"user": "rob"}},
    "tenant": {"function_registration_prefix": "tenant", "context": {"user": "tess"}},
}


class NoTriggers(TriggerHandler):  # type: ignore[misc]
    async def register_trigger(self, config: TriggerConfig) -> None:
        pass

    async def unregister_trigger(self, config: TriggerConfig) -> None:
        pass


class Operator:
    """The operator's worker on the main port: the auth function, the hooks, the middleware and some functions."""

    def __init__(self, worker: PyWorker) -> None:
        self.worker = worker
        self.auth_calls, self.hook_calls = Inbox(), Inbox()
        client = worker.client

        def auth(data: dict[str, Any]) -> dict[str, Any]:
            self.auth_calls.put(data)
            if "token" in data:  # a ripple token came with the connection: the auth function sees its grants
                return {"context": {"user": data["token"]["name"]}}
            role = data["headers"].get("x-role")
            if role not in ROLES:
                raise ValueError(f"unknown role {role!r}")
            return ROLES[role]

        def middleware(data: dict[str, Any]) -> Any:
            payload = {**data["payload"], "_via": data["context"].get("user")}
            return client.trigger({"function_id": data["function_id"], "payload": payload})

        def hook(name: str, field: str) -> Any:
            def run(data: dict[str, Any]) -> dict[str, Any]:
                self.hook_calls.put((name, data))
                if str(data[field]).startswith("denied"):
                    raise ValueError(f"{name} denies {data[field]}")
                return {}

            return run

        client.register_function("op::auth", auth)
        client.register_function("op::middleware", middleware)
        client.register_function("op::on-function", hook("function", "function_id"))
        client.register_function("op::on-trigger", hook("trigger", "function_id"))
        client.register_function("op::on-trigger-type", hook("trigger-type", "trigger_type_id"))
        client.register_function("api::echo", lambda data: {k: v for k, v in data.items() if k != "_caller_worker_id"})
        client.register_function("internal::private", lambda data: "private")
        client.register_function("internal::allowed", lambda data: "allowed")
        client.register_function("meta::public", lambda data: "by metadata", metadata={"public": True})

    async def ready(self, server: IIIServer) -> None:
        await registered(server.engine, lambda: "meta::public" in server.engine.registry.functions)

    async def call(self, function_id: str, payload: Any) -> Any:
        return await self.worker.call(function_id, payload)


@contextlib.asynccontextmanager
async def rbac_server(store: Store, config: RbacConfig, book: TokenBook | None = None) -> AsyncIterator[IIIServer]:
    server = IIIServer(store, worker_port=0, http_port=0, stream_port=0, call_timeout=5 * SECOND, book=book,
                       rbac=RbacPort(0, config))
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def operator(server: IIIServer, token: str | None = None) -> AsyncIterator[Operator]:
    headers = None if token is None else {"Authorization": f"Bearer {token}"}
    async with py_worker(server.worker_port, "operator", headers) as worker:
        op = Operator(worker)
        await op.ready(server)
        yield op


async def refused(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    with pytest.raises(InvalidStatus) as refusal:
        async with websockets.connect(url, additional_headers=headers):
            pass
    return refusal.value.response.status_code, json.loads(refusal.value.response.body)["error"]


def rbac_port(server: IIIServer) -> int:
    assert server.rbac_port is not None
    return server.rbac_port


def rbac_url(server: IIIServer) -> str:
    return f"ws://127.0.0.1:{rbac_port(server)}"


async def forbidden(client: PyWorker, function_id: str, payload: Any = None) -> str:
    with pytest.raises(InvocationError) as refusal:
        await client.call(function_id, payload or {})
    assert refusal.value.code == "FORBIDDEN" and refusal.value.function_id == function_id
    return str(refusal.value)


async def test_sessions_from_an_auth_function(store: Store) -> None:
    async with rbac_server(store, HOOKED) as server, operator(server) as op:
        code, error = await refused(rbac_url(server) + "/?api_key=k")  # no role: the auth function raises
        assert (code, error["code"]) == (401, "unauthorized") and "unknown role None" in error["message"]
        asked = await op.auth_calls.get()
        assert asked["query_params"] == {"api_key": ["k"]} and asked["ip_address"] == "127.0.0.1"
        async with py_worker(rbac_port(server), "admin", {"x-role": "admin"}) as admin:
            assert (await op.auth_calls.get())["headers"]["x-role"] == "admin"
            # exposed by pattern, through the middleware (which sees the session's context)
            assert await admin.call("api::echo", {"n": 1}) == {"n": 1, "_via": "ann"}
            assert await admin.call("internal::allowed", {}) == "allowed"  # the auth result's allowed_functions
            assert await admin.call("meta::public", {}) == "by metadata"  # exposed by its metadata
            assert "rbac.expose_functions" in await forbidden(admin, "internal::private")
            assert await admin.call("engine::log::info", {"message": "from a session"}) is None  # the carve-out
            listed = {f["function_id"] for f in (await admin.call("engine::functions::list", {}))["functions"]}
            assert {"api::echo", "internal::allowed", "meta::public"} <= listed
            assert not listed & {"internal::private", "op::auth", "state::set"}
        async with py_worker(rbac_port(server), "reader", {"x-role": "reader"}) as reader:
            assert "rbac.forbidden_functions" in await forbidden(reader, "api::echo")
            assert server.engine.counters["rbac_refusals"] == 2


async def test_registration_hooks_and_the_function_prefix(store: Store) -> None:
    async with rbac_server(store, HOOKED) as server, operator(server) as op:
        registry = server.engine.registry
        async with py_worker(rbac_port(server), "tenant", {"x-role": "tenant"}) as tenant:
            got = Inbox()
            tenant.client.register_function("denied::fn", lambda data: "never")

            def tenant_echo(data: Any) -> str:
                got.put(data)
                return "tenant echo"

            echo = tenant.client.register_function("echo", tenant_echo)
            await registered(server.engine, lambda: "tenant::echo" in registry.functions)
            assert "denied::fn" not in registry.functions and "tenant::denied::fn" not in registry.functions
            calls = [await op.hook_calls.get() for _ in range(2)]
            assert [(n, d["function_id"], d["context"]) for n, d in calls] == [
                ("function", "denied::fn", {"user": "tess"}), ("function", "echo", {"user": "tess"})]
            # the operator calls the prefixed id; the tenant's SDK is called by its own name
            assert await op.call("tenant::echo", {"x": 1}) == "tenant echo"
            assert (await got.get())["x"] == 1
            # a trigger's function id is prefixed too; the hook sees what the worker sent
            tenant.client.register_trigger({"type": "subscribe", "function_id": "echo", "config": {"topic": "news"}})
            bound = lambda: any(t.function_id == "tenant::echo" for t in registry.of_type("subscribe"))  # noqa: E731
            await registered(server.engine, bound)
            name, data = await op.hook_calls.get()
            assert (name, data["trigger_type"], data["function_id"], data["config"]) == (
                "trigger", "subscribe", "echo", {"topic": "news"})
            await op.call("publish", {"topic": "news", "data": {"headline": "h"}})
            assert (await got.get()) == {"headline": "h"}
            # a tenant may not provide trigger types (its auth result says so): no hook call, no type
            tenant.client.register_trigger_type({"id": "tenant.tick", "description": "d"}, NoTriggers())
            echo.unregister()  # unregistering honours the prefix
            await registered(server.engine, lambda: "tenant::echo" not in registry.functions)
            assert "tenant.tick" not in registry.trigger_types and op.hook_calls.empty()


async def test_a_node_sdk_session(store: Store, tmp_path: Path) -> None:
    script = """
    import { registerWorker } from 'iii-sdk'
    const iii = registerWorker(process.env.III_URL, { headers: { 'x-role': 'admin' }, otel: { enabled: false } })
    const out = { echo: await iii.trigger({ function_id: 'api::echo', payload: { from: 'node' } }) }
    try { await iii.trigger({ function_id: 'internal::private', payload: {} }) } catch (e) { out.code = e.code }
    iii.registerTriggerType({ id: 'denied-type', description: 'd' }, { registerTrigger() {}, unregisterTrigger() {} })
    iii.registerTriggerType({ id: 'node.tick', description: 'ticks' }, { registerTrigger() {}, unregisterTrigger() {} })
    console.log(JSON.stringify(out))
    """
    async with rbac_server(store, HOOKED) as server, operator(server) as op:
        async with node_script(script, rbac_port(server), tmp_path) as node:
            assert await node.line() == {"echo": {"from": "node", "_via": "ann"}, "code": "FORBIDDEN"}
            await registered(server.engine, lambda: "node.tick" in server.engine.registry.trigger_types)
            assert "denied-type" not in server.engine.registry.trigger_types
            hooked = [await op.hook_calls.get() for _ in range(2)]
            assert [d["trigger_type_id"] for _, d in hooked] == ["denied-type", "node.tick"]
            assert hooked[0][1]["context"] == {"user": "ann"}


async def test_sessions_from_ripple_tokens(tmp_path: Path) -> None:
    db = tmp_path / "rbac.db"
    async with Store.open(db) as store:
        book = TokenBook(db, refresh_seconds=0.2)
        await book.start()
        try:
            web = new_token(db, "web", scopes=["todos:rw"])
            op_token = new_token(db, "operator", admin=True, worker=True)
            # Without an auth function a ripple token is what opens a session, and its grants bound the data calls.
            async with rbac_server(store, RbacConfig(expose_functions=EXPOSE), book) as server:
                assert (await refused(rbac_url(server)))[0] == 401
                assert (await refused(rbac_url(server), {"Authorization": "Bearer rpl_wrong"}))[0] == 401
                async with operator(server, op_token), py_worker(
                    rbac_port(server), "web", {"Authorization": f"Bearer {web}"}
                ) as client:
                    await client.call("state::set", {"scope": "todos", "key": "a", "value": 1})  # not exposed: granted
                    with pytest.raises(InvocationError) as refusal:
                        await client.call("state::set", {"scope": "secret", "key": "a", "value": 1})
                    assert refusal.value.code == "FORBIDDEN" and "may not write scope 'secret'" in str(refusal.value)
                    assert await client.call("api::echo", {"n": 2}) == {"n": 2}
                    await forbidden(client, "internal::private")
                # revoking the token ends its sessions
                async with websockets.connect(rbac_url(server), additional_headers=bearer(web)) as raw:
                    assert json.loads(await raw.recv())["type"] == "workerregistered"
                    revoke(db, "web")
                    with pytest.raises(ConnectionClosed) as closed:
                        await asyncio.wait_for(raw.recv(), 10 * SECOND)
                    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
                web = new_token(db, "web-2", scopes=["todos:rw"])
            # With an auth function, it sees the token's name and grants, never the token; a connection it admits
            # without a token has no grants. (No middleware here: one acts with its own worker's token.)
            config = msgspec.structs.replace(HOOKED, middleware_function_id=None)
            async with rbac_server(store, config, book) as server, operator(server, op_token) as op:
                async with py_worker(rbac_port(server), "web", {"Authorization": f"Bearer {web}"}) as client:
                    asked = await op.auth_calls.get()
                    assert "authorization" not in asked["headers"]
                    assert asked["token"] == {"name": "web-2", "admin": False, "worker": False, "scopes": ["todos:rw"],
                                              "streams": []}
                    assert await client.call("state::get", {"scope": "todos", "key": "a"}) == 1
                    assert await client.call("api::echo", {"n": 3}) == {"n": 3}
                async with py_worker(rbac_port(server), "anon", {"x-role": "admin"}) as anonymous:
                    # state::get is in its allowed_functions, but the store finds no grant
                    with pytest.raises(InvocationError, match="token 'anonymous' may not read scope 'todos'"):
                        await anonymous.call("state::get", {"scope": "todos", "key": "a"})
            events = await store.read_events()
            assert [(e.scope, e.meta.actor) for e in events] == [("todos", "web")]
        finally:
            await book.close()
