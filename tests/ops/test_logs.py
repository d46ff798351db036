"""``ripple serve --log-format json --access-log`` as a child process: every line on stderr is a JSON object, every
request has one line carrying the request id the response returned, notable events carry their fields, and no
secret reaches the log."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path
from typing import Any

import httpx
import websockets

from ripple.logs import JsonFormatter, TextFormatter, configure, request_id
from tests.conftest import SECOND, ripple_env
from tests.http.test_serve import serving, stop

APP = '''
def setup(store):
    @store.on_change("boom")
    async def explode(event):
        raise RuntimeError("this reaction always fails")
'''
SECRET = "s3cret-token-value"


async def test_every_line_is_json_and_every_request_has_its_id(tmp_path: Path) -> None:
    (tmp_path / "failing.py").write_text(APP)
    args = ("--port", "0", "--log-format", "json", "--access-log", "--app", "failing.py:setup")
    async with serving(tmp_path, *args) as (proc, url, _):
        async with httpx.AsyncClient(base_url=url, timeout=10 * SECOND) as client:
            given = await client.put("/v1/state/todos/a", json={"n": 1}, headers={"X-Request-Id": "client-id-1"})
            made = await client.get("/v1/state/todos/a", params={"token": SECRET})
            missing = await client.get("/no/such/route", headers={"Authorization": f"Bearer {SECRET}"})
            bad_id = await client.get("/v1/health", headers={"X-Request-Id": "has space"})
            await client.put("/v1/state/boom/b", json=1)
            ws_url = url.replace("http://", "ws://") + f"/v1/subscribe?scope=todos&token={SECRET}"
            async with websockets.connect(ws_url) as ws:
                assert json.loads(await asyncio.wait_for(ws.recv(), 5 * SECOND))["type"] == "hello"
                ws_id = ws.response.headers["x-request-id"] if ws.response else None
        code, _, err = await stop(proc)
    assert code == 0, err

    assert given.headers["x-request-id"] == "client-id-1"
    ids = [r.headers["x-request-id"] for r in (given, made, missing, bad_id)]
    assert len(set(ids)) == 4 and bad_id.headers["x-request-id"] != "has space"
    lines = [json.loads(line) for line in err.splitlines()]  # every line parses, or this raises
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    requests = [line for line in lines if line.get("event") in ("request", "websocket")]
    assert all(line["request_id"] for line in requests)
    by_id = {line["request_id"]: line for line in requests}
    for response in (given, made, missing, bad_id):
        line = by_id[response.headers["x-request-id"]]
        assert line["status"] == response.status_code and line["path"] == response.request.url.path
        assert line["duration_ms"] >= 0 and line["client"].startswith("127.0.0.1:")
    assert by_id[ids[1]]["query"] == "token=<redacted>"
    assert ws_id is not None and by_id[ws_id]["event"] == "websocket" and by_id[ws_id]["status"] == 101
    assert SECRET not in err

    events = {line.get("event") for line in lines}
    assert {"startup", "shutdown", "reaction_failure"} <= events, events
    startup = next(line for line in lines if line.get("event") == "startup")
    assert startup["url"] == url and startup["version"]
    failure = next(line for line in lines if line.get("event") == "reaction_failure")
    assert failure["reaction"].endswith("explode") and failure["offset"] == 2
    assert "RuntimeError: this reaction always fails" in failure["exception"]
    assert failure["level"] == "error"


async def test_no_request_lines_without_access_log(tmp_path: Path) -> None:
    async with serving(tmp_path, "--port", "0", "--log-format", "json") as (proc, url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/v1/health")).headers["x-request-id"]
        code, _, err = await stop(proc)
    assert code == 0
    lines = [json.loads(line) for line in err.splitlines()]
    assert [line["event"] for line in lines] == ["startup", "shutdown", "shutdown"]


async def test_the_log_format_comes_from_the_environment_too(tmp_path: Path) -> None:
    env = ripple_env(RIPPLE_LOG_FORMAT="json", RIPPLE_LOG_LEVEL="warning")
    async with serving(tmp_path, "--port", "0", "--log-level", "info", env=env) as (proc, _, _):
        code, _, err = await stop(proc)
    assert code == 0
    first = json.loads(err.splitlines()[0])
    assert first["event"] == "startup" and first["level"] == "info"  # the flag beat the env's level


def _record(**extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("ripple.test", logging.WARNING, __file__, 1, "value %d", (42,), None)
    record.__dict__.update(extra)
    return record


def test_formatters_carry_extra_fields_and_the_request_id() -> None:
    token = request_id.set("rid-7")
    try:
        line = json.loads(JsonFormatter().format(_record(event="overflow", offset=3, thing=object())))
        text = TextFormatter().format(_record(offset=3))
    finally:
        request_id.reset(token)
    assert line["message"] == "value 42" and line["level"] == "warning" and line["logger"] == "ripple.test"
    assert line["event"] == "overflow" and line["offset"] == 3 and line["request_id"] == "rid-7"
    assert line["thing"].startswith("<object")  # anything that is not JSON is written as its repr
    assert line["ts"].endswith("Z")
    assert "WARNING ripple.test: value 42" in text and "offset=3" in text and "request_id=rid-7" in text


def test_configure_sends_ripple_records_as_json_lines() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = list(root.handlers), root.level, logging.getLogger("ripple").level
    try:
        configure("json", "info", stream)
        logging.getLogger("ripple.x").info("hello", extra={"event": "startup"})
        logging.getLogger("ripple.x").debug("not shown")
        logging.getLogger("elsewhere").info("not shown either")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.getLogger("ripple").setLevel(saved[2])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["message"], line["event"]) for line in lines] == [("hello", "startup")]
