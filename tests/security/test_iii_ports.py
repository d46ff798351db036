"""The browser boundary and the start-up rule on the iii ports (DESIGN §15, docs/security.md): the worker and RBAC
ports check ``Host`` and ``Origin`` on every handshake with the main port's rules and allow lists, the HTTP-trigger and
stream ports stay open to pages (iii's behaviour), and a non-loopback iii bind needs ``--auth``."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from ripple import Store
from ripple.auth.book import TokenBook
from ripple.errors import InsecureBindError
from ripple.http.boundary import Boundary
from ripple.http.serve import IiiOptions, ServeOptions, auth_mode, check_bind
from ripple.iii.rbac import RbacConfig, RbacPort
from ripple.iii.server import IIIServer
from tests.conftest import SECOND
from tests.http.test_serve import serving, stop
from tests.security.conftest import new_token
from tests.security.test_tokens_cli import ripple

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


@pytest.mark.parametrize(("flags", "refused"), [
    (("--iii", "--iii-host", "0.0.0.0"), "0.0.0.0 (--iii-host)"),
    (("--iii", "--iii-rbac-port", "0", "--iii-rbac-host", "::"), ":: (--iii-rbac-host)"),
])
def test_a_network_iii_bind_without_auth_refuses_to_start(tmp_path: Path, flags: tuple[str, ...], refused: str) -> None:
    result = ripple(tmp_path, "serve", "app.db", "--port", "0", *flags)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"refusing to serve {refused} without --auth" in result.stderr
    assert not (tmp_path / "app.db").exists()  # refused before anything was opened


OPEN = "auth: OFF on a network address (--insecure-no-auth)"


@pytest.mark.parametrize(("iii", "rbac_host", "auth", "insecure", "mode"), [
    (IiiOptions(enabled=True), None, False, False, "auth: off (loopback only)"),
    (IiiOptions(enabled=False, host="0.0.0.0"), None, False, False, "auth: off (loopback only)"),  # no --iii: unused
    (IiiOptions(enabled=True, host="0.0.0.0"), None, True, False, "auth: tokens required"),
    (IiiOptions(enabled=True, host="0.0.0.0"), None, False, True, OPEN),
    (IiiOptions(enabled=True), "10.1.2.3", False, True, OPEN),
    (IiiOptions(enabled=True, host="10.1.2.3"), None, False, False, None),
    (IiiOptions(enabled=True), "0.0.0.0", False, False, None),
])
def test_iii_bind_rules(iii: IiiOptions, rbac_host: str | None, auth: bool, insecure: bool, mode: str | None) -> None:
    if rbac_host is not None:
        iii = msgspec.structs.replace(iii, rbac=RbacPort(0, RbacConfig(), rbac_host))
    options = ServeOptions(iii=iii, auth=auth, insecure_no_auth=insecure)
    if mode is None:
        with pytest.raises(InsecureBindError):
            check_bind(options)
    else:
        check_bind(options)
        assert auth_mode(options) == mode


_III_LINE = re.compile(r"workers ws://[^:]+:(?P<worker>\d+), HTTP triggers http://[^:]+:(?P<http>\d+), streams "
                       r"ws://[^:]+:(?P<stream>\d+), RBAC workers ws://[^:]+:(?P<rbac>\d+)")


async def test_ripple_serve_guards_the_iii_ports_and_logs_no_token_at_debug(tmp_path: Path) -> None:
    admin = new_token(tmp_path / "app.db", "admin", admin=True)
    reader = new_token(tmp_path / "app.db", "reader", scopes=["a:r"], streams=["s:r"])
    args = ("app.db", "--port", "0", "--auth", "--log-level", "debug", "--access-log", "--allow-origin", APP_ORIGIN,
            "--iii", "--iii-worker-port", "0", "--iii-http-port", "0", "--iii-stream-port", "0",
            "--iii-rbac-port", "0")
    async with serving(tmp_path, *args) as (proc, url, _):
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30 * SECOND)).decode()
        ports = _III_LINE.search(line)
        assert ports is not None, line
        worker, rbac, stream = (f"ws://127.0.0.1:{ports[name]}" for name in ("worker", "rbac", "stream"))
        as_admin = {"Authorization": f"Bearer {admin}"}
        # the --allow-origin list of the main port holds on the worker and RBAC ports
        assert (await handshake(f"{worker}/", {**as_admin, "Origin": "http://evil.example"}))[0] == 403
        assert (await handshake(f"{rbac}/?token={reader}", {"Origin": "http://evil.example"}))[0] == 403
        assert (await handshake(f"{worker}/", {**as_admin, "Origin": APP_ORIGIN}))[0] == 101
        # a token on every port, in a header and in the query
        assert (await handshake(f"{worker}/?token={admin}", {}))[0] == 101
        assert (await handshake(f"{rbac}/?token={reader}&x=1", {}))[0] == 101
        assert (await handshake(f"{rbac}/", {"Authorization": f"Bearer {reader}"}))[0] == 101
        assert (await handshake(f"{stream}/stream/s/g?token={reader}", {}))[0] == 101
        assert (await handshake(f"{stream}/stream/s/g", {"Authorization": f"Bearer {reader}"}))[0] == 101
        async with websockets.connect(f"{url.replace('http', 'ws')}/v1/subscribe?scope=a&token={reader}") as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 5 * SECOND))["type"] == "hello"
        code, _, err = await stop(proc)
    assert code == 0, err
    assert " DEBUG " in err  # the debug log is on, and says something
    for token in (admin, reader):
        assert token not in err, "a token was logged"


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/stream/s/g?after=-1", 400, "bad_request"),
    ("/stream/s/g?after=x", 400, "bad_request"),
    ("/stream/s/g?after=0&after=0", 400, "bad_request"),
    ("/stream/s/g?after=99", 400, "offset_out_of_range"),
    ("/stream/s/g?limit=1", 400, "bad_request"),
    ("/nowhere", 404, "not_found"),
])
async def test_the_stream_port_refuses_bad_paths_with_the_json_error_body(
    iii: IIIServer, path: str, status: int, code: str
) -> None:
    got, error = await handshake(f"ws://127.0.0.1:{iii.stream_port}{path}", {})
    assert (got, error is not None and error["code"]) == (status, code), error
    if code == "offset_out_of_range":
        assert error is not None and error["detail"] == {"after": 99, "earliest": 1, "head": 0}


async def test_two_token_parameters_are_refused_on_every_iii_port(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    admin, reader = new_token(db, "admin", admin=True), new_token(db, "reader", scopes=["a:r"], streams=["s:r"])
    async with Store.open(db) as store:
        book = TokenBook(db)
        await book.start()
        server = IIIServer(store, worker_port=0, http_port=0, stream_port=0, book=book, rbac=RbacPort(0, RbacConfig()))
        try:
            await server.start()
            assert server.rbac_port is not None
            for url, good in ((f"ws://127.0.0.1:{server.worker_port}/", admin),
                              (f"ws://127.0.0.1:{server.rbac_port}/", reader),
                              (f"ws://127.0.0.1:{server.stream_port}/stream/s/g", reader)):
                for twice in (f"?token={good}&token={reader}", f"?token={reader}&token={good}"):
                    got, error = await handshake(url + twice, {})
                    assert (got, error and error["code"]) == (400, "bad_request"), (url, error)
                assert (await handshake(f"{url}?token={good}", {}))[0] == 101
        finally:
            await server.close()
            await book.close()
