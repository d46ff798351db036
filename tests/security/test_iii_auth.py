"""Tokens on the iii ports (``ripple serve --iii --auth``, DESIGN §15, ripple.iii.auth): worker connections need a
worker token, their ``state::*``/``stream::*`` calls are checked like REST calls and carry the token as actor,
triggers may only watch what the token may read, stream clients need read access, and revocation disconnects."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ripple import Store
from ripple.auth.book import TokenBook
from ripple.iii.server import IIIServer
from tests.conftest import SECOND
from tests.iii.conftest import RawWorker, start_worker
from tests.security.conftest import new_token, revoke

PY_PROBE = """
import json, os
from iii import InitOptions, register_worker
iii = register_worker(os.environ["III_URL"], InitOptions(worker_name="auth-probe"))
out = {}
for scope in ("todos", "secret"):
    try:
        iii.trigger({"function_id": "state::set", "payload": {"scope": scope, "key": "py", "value": {"by": "py"}}})
        out[scope] = "ok"
    except Exception as exc:
        out[scope] = str(exc)
print("RESULT " + json.dumps(out), flush=True)
iii.shutdown()
"""
NODE_PROBE = """
import { registerWorker } from 'iii-sdk'
const iii = registerWorker(process.env.III_URL, { workerName: 'auth-probe' })
const out = {}
for (const scope of ['todos', 'secret']) {
  try {
    await iii.trigger({ function_id: 'state::set', payload: { scope, key: 'node', value: { by: 'node' } } })
    out[scope] = 'ok'
  } catch (e) { out[scope] = String((e && e.message) || e) }
}
console.log('RESULT ' + JSON.stringify(out))
process.exit(0)
"""


class Setup:
    def __init__(self, store: Store, server: IIIServer, db: Path) -> None:
        self.store, self.server, self.db = store, server, db


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[Setup]:
    db = tmp_path / "iii.db"
    async with Store.open(db) as store:
        book = TokenBook(db, refresh_seconds=0.2)
        await book.start()
        server = IIIServer(store, worker_port=0, http_port=0, stream_port=0, call_timeout=5 * SECOND, book=book)
        await server.start()
        try:
            yield Setup(store, server, db)
        finally:
            await server.close()
            await book.close()


def worker_token(setup: Setup, name: str = "w") -> str:
    return new_token(setup.db, name, scopes=["todos:rw"], streams=["live:rw"], worker=True)


async def refused_status(url: str, headers: dict[str, str] | None = None) -> int:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(url, additional_headers=headers):
            pass
    body = json.loads(refused.value.response.body)
    assert set(body["error"]) == {"code", "message", "detail"}
    return refused.value.response.status_code


async def test_the_worker_port_needs_a_worker_token(secured: Setup) -> None:
    url = f"ws://127.0.0.1:{secured.server.worker_port}/"
    assert await refused_status(url) == 401
    assert await refused_status(url + "?token=rpl_wrong") == 401
    reader = new_token(secured.db, "reader", scopes=["todos:rw"])
    assert await refused_status(url, {"Authorization": f"Bearer {reader}"}) == 403  # not --worker


async def test_worker_calls_are_checked_and_carry_the_actor(secured: Setup) -> None:
    token = worker_token(secured)
    worker = await RawWorker.connect(secured.server.worker_port, f"/?token={token}")
    try:
        assert await worker.result("state::set", {"scope": "todos", "key": "a", "value": 1}) is not None
        refused = await worker.call("state::set", {"scope": "secret", "key": "a", "value": 1})
        assert refused["error"] is not None and "may not write scope 'secret'" in refused["error"]["message"]
        refused = await worker.call("state::get", {"scope": "secret", "key": "a"})
        assert refused["error"] is not None and "may not read" in refused["error"]["message"]
        await worker.call("stream::send", {"stream_name": "live", "group_id": "g", "type": "t", "data": 1})
        refused = await worker.call("stream::send", {"stream_name": "other", "group_id": "g", "type": "t", "data": 1})
        assert refused["error"] is not None
        await worker.trigger("t1", "state", "f", {"scope": "secret"})
        result = await worker.expect(lambda f: f.get("type") == "triggerregistrationresult" and f.get("id") == "t1")
        assert result["error"]["code"] == "FORBIDDEN"
        await worker.trigger("t2", "state", "f", {})
        result = await worker.expect(lambda f: f.get("type") == "triggerregistrationresult" and f.get("id") == "t2")
        assert result["error"]["code"] == "FORBIDDEN"  # every scope: admin only
    finally:
        await worker.close()
    events = await secured.store.read_events(0, 100, kind="all")
    assert [(e.scope, e.meta.actor) for e in events] == [("todos", "w"), ("live", "w")]


async def test_revoking_a_worker_token_disconnects_it(secured: Setup) -> None:
    token = worker_token(secured)
    worker = await RawWorker.connect(secured.server.worker_port, f"/?token={token}")
    revoke(secured.db, "w")
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(10 * SECOND):
            while True:
                await worker.ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_stream_clients_need_read_access(secured: Setup) -> None:
    port = secured.server.stream_port
    assert await refused_status(f"ws://127.0.0.1:{port}/stream/live/g") == 401
    other = new_token(secured.db, "other", streams=["other:r"])
    assert await refused_status(f"ws://127.0.0.1:{port}/stream/live/g?token={other}") == 403
    reader = new_token(secured.db, "reader", streams=["live:r"])
    async with websockets.connect(f"ws://127.0.0.1:{port}/stream/live/g?token={reader}") as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 5 * SECOND))["event"]["type"] == "sync"
    async with websockets.connect(f"ws://127.0.0.1:{port}/",
                                  additional_headers={"Authorization": f"Bearer {reader}"}) as ws:
        join: dict[str, Any] = {"type": "join", "data": {"subscriptionId": "s", "streamName": "secret",
                                                         "groupId": "g"}}
        await ws.send(json.dumps(join))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5 * SECOND)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


@pytest.mark.parametrize(("name", "script", "how"), [
    ("python", PY_PROBE, "env"),  # the Python SDK sends Authorization: Bearer $III_TOKEN
    ("node-0.9.0", NODE_PROBE, "query"),  # no headers in 0.9.0: ?token= on the engine URL
    ("node-latest", NODE_PROBE, "query"),
])
async def test_real_sdk_workers_pass_a_token(secured: Setup, tmp_path: Path, name: str, script: str,
                                             how: str) -> None:
    token = worker_token(secured, name)
    probe = tmp_path / ("probe.py" if name == "python" else "probe.mjs")
    probe.write_text(script)
    proc = await start_worker(name, secured.server.worker_port, tmp_path, probe,
                              query=f"?token={token}" if how == "query" else "",
                              env={"III_TOKEN": token} if how == "env" else None)
    try:
        await asyncio.wait_for(proc.proc.wait(), 30 * SECOND)
    finally:
        await proc.stop()
    lines = [ln for ln in proc.output().splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.output()
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["todos"] == "ok" and "may not write scope 'secret'" in result["secret"], result
    events = await secured.store.read_events(0, 100)
    assert [(e.scope, e.meta.actor) for e in events] == [("todos", name)]


async def test_stream_grants_govern_stored_items_and_worker_owned_streams(secured: Setup) -> None:
    reader = new_token(secured.db, "items-reader", streams=["live:r", "owned:r"], worker=True)
    owner = new_token(secured.db, "owner", admin=True, worker=True)
    limited = await RawWorker.connect(secured.server.worker_port, f"/?token={reader}")
    provider = await RawWorker.connect(secured.server.worker_port, f"/?token={owner}")
    try:
        await provider.result("stream::set", {"stream_name": "live", "group_id": "g", "item_id": "a", "data": 1})
        assert await limited.result("stream::get", {"stream_name": "live", "group_id": "g", "item_id": "a"}) == 1
        item = {"stream_name": "live", "group_id": "g", "item_id": "a", "data": 2}
        refused = (await limited.call("stream::set", item))["error"]
        assert refused["code"] == "FORBIDDEN" and "may not write scope '$stream:live:g'" in refused["message"]
        refused = (await limited.call("stream::list", {"stream_name": "other", "group_id": "g"}))["error"]
        assert refused["code"] == "FORBIDDEN"
        # A stream a worker implements (stream::get(owned), ...): the same rule, before the call is forwarded.
        for operation in ("get", "set"):
            await provider.register(f"stream::{operation}(owned)")
        await secured.server.engine.wait_until(
            lambda: secured.server.engine.registry.owner("stream::set(owned)") is not None, 5 * SECOND)
        owned = {"stream_name": "owned", "group_id": "g", "item_id": "b"}
        refused = (await limited.call("stream::set", {**owned, "data": 3}))["error"]
        assert refused["code"] == "FORBIDDEN"
        asked = asyncio.ensure_future(limited.call("stream::get", owned))
        invoke = await provider.expect(lambda f: f.get("type") == "invokefunction")
        assert invoke["function_id"] == "stream::get(owned)"  # the refused set never reached the owner
        await provider.answer(invoke, {"from": "owner"})
        assert (await asked)["result"] == {"from": "owner"}
    finally:
        await limited.close()
        await provider.close()


async def test_byte_channels_are_reached_by_their_key_alone(secured: Setup) -> None:
    worker = await RawWorker.connect(secured.server.worker_port, f"/?token={worker_token(secured)}")
    try:
        refs = await worker.result("engine::channels::create", {})
        base = f"ws://127.0.0.1:{secured.server.worker_port}/ws/channels"
        writer, reader = refs["writer"], refs["reader"]
        # No token (the Node SDK sends no headers on channel sockets): the access key is the capability.
        async with websockets.connect(f"{base}/{reader['channel_id']}?key={reader['access_key']}&dir=read") as rd:
            async with websockets.connect(f"{base}/{writer['channel_id']}?key={writer['access_key']}&dir=write") as wr:
                await wr.send(b"bytes")
            assert await asyncio.wait_for(rd.recv(), 5 * SECOND) == b"bytes"
        with pytest.raises(InvalidStatus) as wrong:
            async with websockets.connect(f"{base}/{reader['channel_id']}?key=guess&dir=read"):
                pass
        assert wrong.value.response.status_code == 404
        assert await refused_status(f"ws://127.0.0.1:{secured.server.worker_port}/") == 401  # the worker port itself
    finally:
        await worker.close()
