"""The browser boundary and the start-up rule on the iii ports (DESIGN §15, docs/security.md): the worker and RBAC
ports check ``Host`` and ``Origin`` on every handshake with the main port's rules and allow lists, the HTTP-trigger and
stream ports stay open to pages (iii's behaviour), and a non-loopback iii bind needs ``--auth``."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from ripple import Store
from ripple.http.boundary import Boundary
from ripple.iii.rbac import RbacConfig, RbacPort
from ripple.iii.server import IIIServer
from tests.conftest import SECOND

APP_ORIGIN = "https://app.example"


@pytest.fixture
async def iii(store: Store) -> AsyncIterator[IIIServer]:
    server = IIIServer(store, worker_port=0, http_port=0, stream_port=0, call_timeout=5 * SECOND,
                       rbac=RbacPort(0, RbacConfig()), boundary=Boundary.listed(allow_origins=(APP_ORIGIN,)))
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def handshake(url: str, headers: dict[str, str]) -> tuple[int, dict[str, Any] | None]:
    """(101, the first frame) when the upgrade is accepted, else (status, the JSON error). A ``Host`` in ``headers``
    replaces the URL's (the socket still goes to 127.0.0.1), as a DNS-rebinding page's request would."""
    host = headers.pop("Host", None)
    parts = urllib.parse.urlsplit(url)
    sock = socket.create_connection(("127.0.0.1", parts.port or 80))
    if host is not None:
        url = parts._replace(netloc=host).geturl()
    try:
        async with websockets.connect(url, sock=sock, additional_headers=headers, open_timeout=5 * SECOND) as ws:
            if parts.path == "/otel":  # telemetry: nothing is sent back
                return 101, None
            return 101, json.loads(await asyncio.wait_for(ws.recv(), 5 * SECOND))
    except InvalidStatus as refused:
        return refused.response.status_code, json.loads(refused.response.body)["error"]


def worker_ports(iii: IIIServer) -> list[int]:
    assert iii.rbac_port is not None
    return [iii.worker_port, iii.rbac_port]


@pytest.mark.parametrize(("headers", "status", "code"), [
    ({"Origin": "http://evil.example"}, 403, "origin_not_allowed"),
    ({"Origin": "null"}, 403, "origin_not_allowed"),
    ({"Host": "evil.example"}, 421, "host_not_allowed"),
    ({"Host": "127.0.0.1.evil.example:1"}, 421, "host_not_allowed"),
    ({"Origin": APP_ORIGIN}, 101, None),  # --allow-origin
    ({"Origin": APP_ORIGIN.upper() + "/"}, 101, None),
    ({"Host": "localhost"}, 101, None),
    ({}, 101, None),  # no Origin: not a browser (the iii SDKs send none)
])
async def test_the_worker_and_rbac_ports_apply_the_browser_boundary(
    iii: IIIServer, headers: dict[str, str], status: int, code: str | None
) -> None:
    for port in worker_ports(iii):
        for path in ("/", "/otel"):
            got, body = await handshake(f"ws://127.0.0.1:{port}{path}", dict(headers))
            assert got == status, (port, path, body)
            if code is not None:
                assert body is not None and body["code"] == code
            elif path == "/":
                assert body is not None and body["type"] == "workerregistered"


async def test_the_trigger_and_stream_ports_stay_open_to_pages(iii: IIIServer) -> None:
    # DESIGN §15: iii apps serve browsers from these two (permissive CORS, any Origin on the stream port)
    status, sync = await handshake(f"ws://127.0.0.1:{iii.stream_port}/stream/s/g", {"Origin": "http://evil.example"})
    assert status == 101 and sync is not None and sync["event"]["type"] == "sync"
    async with httpx.AsyncClient(timeout=5 * SECOND) as client:
        answer = await client.get(f"http://127.0.0.1:{iii.http_port}/nothing",
                                  headers={"Origin": "http://evil.example", "Host": "evil.example"})
    assert answer.status_code == 404
