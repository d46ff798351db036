"""Fuzzing the WebSocket endpoints (issue 9, part 5) of a real ``ripple serve`` child with hypothesis: random query
strings (known and unknown parameters, random values, raw percent-escapes) on ``/v1/subscribe`` and
``/v1/streams/{stream}/{group}``, then random client frames (text and binary).

Each connection ends one of two ways: a valid ``hello`` (then any client frame gets ``bad_request``), or an ``error``
frame followed by close 1008. Never a crash, a 5xx or a dropped connection, and the server keeps answering."""

from __future__ import annotations

import json
import string
import subprocess
import tempfile
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import RIPPLE, ROOT, SECOND, count, ripple_env
from tests.fault.child import free_port

NAMES = ["scope", "key", "kind", "after", "snapshot", "batch", "token"]
VALUES = ["state", "stream", "all", "true", "false", "1", "0", "", "-1", "1000", "1001", "99999999999999999999", "a/b"]
QUERY_CHARS = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@/?%"  # RFC 3986 query characters

pair = st.tuples(
    st.sampled_from(NAMES) | st.text(min_size=0, max_size=8),
    st.sampled_from(VALUES) | st.integers(-(2**70), 2**70).map(str) | st.text(max_size=20),
)
likely_valid = st.tuples(st.sampled_from(["scope", "key", "kind", "after", "batch"]), st.sampled_from(VALUES))
query = (
    st.lists(likely_valid, max_size=3).map(urllib.parse.urlencode)
    | st.lists(pair, max_size=6).map(urllib.parse.urlencode)
    | st.text(QUERY_CHARS, max_size=40)
)
# an empty stream or group segment matches no route at all (HTTP 403 on the handshake, like any unknown WebSocket path)
name = st.text(min_size=1, max_size=12).map(lambda s: urllib.parse.quote(s, safe=""))
path = st.just("/v1/subscribe") | st.builds(lambda s, g: f"/v1/streams/{s}/{g}", name, name)
OUTCOMES: Counter[str] = Counter()
client_frame = st.none() | st.text(max_size=50) | st.binary(max_size=50)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = subprocess.Popen(
            [*RIPPLE, "serve", f"{tmp}/ws.db", "--port", str(port), "--heartbeat", "0.2"],
            cwd=ROOT, env=ripple_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith(b"ripple serving")
            url = f"http://127.0.0.1:{port}"
            for i in range(20):  # a few events of each kind, so that after=N and snapshots have something to read
                assert requests.put(f"{url}/v1/state/s{i % 3}/k{i}", json={"i": i}).status_code == 201
                assert requests.post(f"{url}/v1/streams/chat/room", json={"type": "m", "data": i}).status_code == 201
            yield url
            assert proc.poll() is None, "the server died"
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=30 * SECOND)
        assert proc.returncode == 0 and b"Traceback" not in err, err.decode()[-3000:]


def frames_until_error(ws: ClientConnection) -> dict[str, Any]:
    """Skip snapshot/event/live/heartbeat frames; return the first error frame."""
    while True:
        frame: dict[str, Any] = json.loads(ws.recv(timeout=10 * SECOND))
        if frame["type"] == "error":
            return frame
        assert frame["type"] in ("snapshot", "snapshot_end", "event", "events", "live", "heartbeat"), frame


def assert_closed_1008(ws: ClientConnection) -> None:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=10 * SECOND)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008, closed.value


@given(path=path, query=query, frame=client_frame)
@settings(max_examples=count(100, 1000), deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_any_query_and_frame_gets_hello_or_error_then_1008(server: str, path: str, query: str, frame: Any) -> None:
    url = server.replace("http", "ws") + path + ("?" + query if query else "")
    with connect(url, open_timeout=10 * SECOND, max_size=None, compression=None) as ws:
        first = json.loads(ws.recv(timeout=10 * SECOND))
        if first["type"] == "error":
            assert first["code"] in ("bad_request", "offset_out_of_range"), first
            assert first["message"]
            assert_closed_1008(ws)
            OUTCOMES[f"error {first['code']}"] += 1
        else:
            assert first["type"] == "hello" and first["version"] == 1, first
            if frame is not None:
                ws.send(frame)
                error = frames_until_error(ws)
                assert error["code"] == "bad_request", error
                assert_closed_1008(ws)
            OUTCOMES["hello" + (" + client frame refused" if frame is not None else "")] += 1
    assert requests.get(f"{server}/v1/health", timeout=10 * SECOND).status_code == 200


def test_stream_path_is_read_raw(server: str) -> None:
    """Regression: ``/v1/streams/a%2Fb/c`` was routed as stream ``a``, group ``b/c`` (the router decodes ``%2F``) and
    delivered that group's events; the stream name ``a/b`` is invalid, as ``POST /v1/streams/a%2Fb/c`` says (422)."""
    send = requests.post(f"{server}/v1/streams/a/b%2Fc", json={"type": "m", "data": 1})
    assert send.status_code == 201, send.text
    assert requests.post(f"{server}/v1/streams/a%2Fb/c", json={"type": "m", "data": 1}).status_code == 422
    ws_url = server.replace("http", "ws")
    with connect(f"{ws_url}/v1/streams/a%2Fb/c?after=0") as ws:
        error = json.loads(ws.recv(timeout=10 * SECOND))
        assert (error["type"], error["code"]) == ("error", "bad_request"), error
        assert "a/b" in error["message"]
        assert_closed_1008(ws)
    with connect(f"{ws_url}/v1/streams/a/b%2Fc?after={send.json()['offset'] - 1}") as ws:
        assert json.loads(ws.recv(timeout=10 * SECOND))["type"] == "hello"
        event = json.loads(ws.recv(timeout=10 * SECOND))
        assert (event["scope"], event["key"], event["offset"]) == ("a", "b/c", send.json()["offset"])


def test_fuzz_outcomes(server: str) -> None:
    """Both ways of ending were exercised (runs after the fuzz test in this module)."""
    assert OUTCOMES["error bad_request"] and sum(v for k, v in OUTCOMES.items() if k.startswith("hello")), OUTCOMES
    print(f"\nFIGURES fuzz-ws: {dict(OUTCOMES)}")
