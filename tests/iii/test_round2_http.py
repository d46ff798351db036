"""Round 2 over HTTP: channels (raw request bodies, streamed responses, ``engine::channels::create``), middleware,
HTTP-invoked functions and the engine's route-conflict refusal — driven by the PyPI SDK and a real HTTP client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets

from ripple.iii import routes
from ripple.iii.server import IIIServer
from tests.conftest import SECOND
from tests.iii.conftest import RawWorker
from tests.iii.sdk import Inbox, py_worker, registered

pytestmark = pytest.mark.filterwarnings("ignore:register_trigger is deprecated:DeprecationWarning")


def route(client: Any, function_id: str, path: str, method: str = "POST", **config: Any) -> None:
    client.register_trigger(
        {"type": "http", "function_id": function_id, "config": {"api_path": path, "http_method": method, **config}}
    )


async def routes_ready(iii: IIIServer, count: int) -> None:
    await registered(iii.engine, lambda: len(iii.engine.registry.routes) >= count)


async def test_raw_request_body_and_streamed_response(iii: IIIServer, http: httpx.AsyncClient) -> None:
    from iii_helpers.http import http as streaming

    async def upload(req: Any, res: Any) -> None:
        raw = await req.request_body.read_all()
        await res.status(201)
        await res.headers({"content-type": "text/plain", "x-size": str(len(raw))})
        for part in (b"got ", raw[:5], b"..."):
            await res.writer.write(part)
        await res.writer.close_async()

    async with py_worker(iii.worker_port) as py:
        py.client.register_function("files::upload", streaming(upload))
        route(py.client, "files::upload", "files")
        await routes_ready(iii, 1)
        body = bytes(range(256)) * 1000  # not JSON: `body` is null, the bytes come through the channel
        r = await http.post("/files", content=body, headers={"content-type": "application/octet-stream"})
        assert r.status_code == 201 and r.headers["x-size"] == str(len(body))
        assert r.headers["content-type"] == "text/plain" and r.content == b"got " + body[:5] + b"..."
        # A JSON body is both parsed (`body`) and available raw.
        seen = Inbox()

        async def echo(req: Any, res: Any) -> None:
            seen.put((req.body, (await req.request_body.read_all()).decode()))
            await res.status(200)
            await res.writer.close_async()

        py.client.register_function("files::echo", streaming(echo))
        route(py.client, "files::echo", "echo")
        await routes_ready(iii, 2)
        r = await http.post("/echo", content='{"z":2, "a":1}', headers={"content-type": "application/json"})
        assert r.status_code == 200 and r.content == b""
        assert await seen.get() == ({"z": 2, "a": 1}, '{"z":2, "a":1}')


async def test_channels_between_workers(iii: IIIServer) -> None:
    async def count(data: dict[str, Any]) -> dict[str, Any]:
        return {"size": len(await data["reader"].read_all())}  # the SDK turned the ref into a ChannelReader

    async with py_worker(iii.worker_port) as py:
        py.client.register_function("bytes::count", count)
        await registered(iii.engine, lambda: "bytes::count" in iii.engine.registry.functions)
        caller = await RawWorker.connect(iii.worker_port)
        try:
            created = await caller.result("engine::channels::create", {"buffer_size": 4})
            writer, reader = created["writer"], created["reader"]
            assert (writer["direction"], reader["direction"]) == ("write", "read")
            assert writer["channel_id"] == reader["channel_id"]
            payload = {"reader": reader}
            await caller.send(type="invokefunction", invocation_id="c", function_id="bytes::count", data=payload)
            url = f"ws://127.0.0.1:{iii.worker_port}/ws/channels/{writer['channel_id']}"
            async with websockets.connect(f"{url}?key={writer['access_key']}&dir=write") as pipe:
                for _ in range(10):  # more than the buffer: the writer waits for the reader
                    await pipe.send(b"x" * 10_000)
            result = await caller.expect(lambda f: f.get("invocation_id") == "c")
            assert result["result"] == {"size": 100_000}
            with pytest.raises(websockets.InvalidStatus):  # a wrong key is a 404, as the engine
                await websockets.connect(f"{url}?key=nope&dir=read")
        finally:
            await caller.close()


async def test_middleware_continue_respond_and_order(iii: IIIServer, http: httpx.AsyncClient) -> None:
    order = Inbox()

    def middleware(name: str, verdict: dict[str, Any]) -> Any:
        def run(data: dict[str, Any]) -> dict[str, Any]:
            order.put((name, data["phase"], data["request"]["path_params"], data["request"]["query_params"]))
            return verdict

        return run

    async with py_worker(iii.worker_port) as py:
        py.client.register_function("mw::one", middleware("one", {"action": "continue"}))
        py.client.register_function("mw::two", middleware("two", {"action": "continue"}))
        deny = {"action": "respond", "response": {"status_code": 403, "body": {"error": "no"}}}
        py.client.register_function("mw::deny", middleware("deny", deny))
        py.client.register_function("h::ok", lambda req: {"status_code": 200, "body": {"id": req["path_params"]["id"]}})
        route(py.client, "h::ok", "items/:id", "GET", middleware_function_ids=["mw::one", "mw::two"])
        route(py.client, "h::ok", "secret/:id", "GET", middleware_function_ids=["mw::deny"])
        await routes_ready(iii, 2)
        r = await http.get("/items/7?q=x")
        assert r.status_code == 200 and r.json() == {"id": "7"}
        assert [await order.get(), await order.get()] == [
            ("one", "preHandler", {"id": "7"}, {"q": "x"}),
            ("two", "preHandler", {"id": "7"}, {"q": "x"}),
        ]
        r = await http.get("/secret/1")
        assert r.status_code == 403 and r.json() == {"error": "no"}


async def test_route_conflict_is_refused_with_the_engines_message(iii: IIIServer, worker: RawWorker) -> None:
    await worker.trigger("a", "http", "f", {"api_path": "lists/:listId/:userId"})
    await worker.trigger("b", "http", "f", {"api_path": "lists/:userId/:listId"})
    refused = await worker.expect(lambda f: f.get("type") == "triggerregistrationresult")
    assert refused["id"] == "b" and refused["error"] == {
        "code": "trigger_registration_failed",
        "message": "Route 'GET lists/:userId/:listId' conflicts with already-registered route "
        "'GET lists/:listId/:userId': routes with identical structure but different path-parameter names are not "
        "supported",
    }


async def test_http_invoked_function(iii: IIIServer) -> None:
    received: asyncio.Queue[tuple[str, dict[str, str], bytes]] = asyncio.Queue()

    async def probe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)}
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        await received.put((head[0], headers, body))
        answer = b'{"echo":true}'
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 13\r\n\r\n" + answer)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(probe, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    worker = await RawWorker.connect(iii.worker_port)
    try:
        invocation = {"url": f"http://127.0.0.1:{port}/hook", "method": "PUT", "headers": {"x-custom": "1"}}
        await worker.send(type="registerfunction", id="remote::fn", invocation=invocation)
        await registered(iii.engine, lambda: "remote::fn" in iii.engine.registry.functions)
        assert await worker.result("remote::fn", {"a": 1}) == {"echo": True}
        line, headers, body = await asyncio.wait_for(received.get(), 5 * SECOND)
        assert line == "PUT /hook HTTP/1.1" and headers["x-custom"] == "1"
        assert headers["x-iii-function-path"] == "remote::fn" and headers["content-type"] == "application/json"
        assert json.loads(body)["a"] == 1  # plus the caller's worker id, as the engine adds
    finally:
        await worker.close()
        server.close()
        await server.wait_closed()


async def test_nothing_returned_nothing_streamed_r4(
    iii: IIIServer, worker: RawWorker, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "WRITER_GRACE", 0.05)
    await worker.register("quiet::fn")
    await worker.trigger("q", "http", "quiet::fn", {"api_path": "quiet"})
    await registered(iii.engine, lambda: "quiet::fn" in iii.engine.registry.functions)
    request = asyncio.create_task(http.get("/quiet"))
    invoke = await worker.expect(lambda f: f.get("type") == "invokefunction")
    await worker.send(type="invocationresult", invocation_id=invoke["invocation_id"], function_id="quiet::fn")
    r = await request  # R-4: the engine would wait for a streamed response until its timeout; ripple answers
    assert r.status_code == 200 and r.json() is None
