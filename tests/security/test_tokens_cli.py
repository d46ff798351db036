"""``ripple token create/list/revoke`` beside a live ``ripple serve --auth``; the open-bind refusal; tokens never in
the database or the logs (DESIGN §15)."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ripple.errors import InsecureBindError
from ripple.http.serve import ServeOptions, auth_mode, check_bind
from tests.conftest import RIPPLE, SECOND, ripple_env

_STARTED = re.compile(r"^ripple serving (?P<db>.+) on (?P<url>http://[\d.]+:\d+) .*; (?P<mode>auth: [^)]*)\)$")


def ripple(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RIPPLE, *args], cwd=cwd, env=ripple_env(), capture_output=True, text=True,
                          timeout=60 * SECOND)


def create(cwd: Path, name: str, *grants: str) -> str:
    result = ripple(cwd, "token", "create", "--db", "app.db", "--name", name, *grants)
    assert result.returncode == 0, result.stderr
    assert "cannot be shown again" in result.stderr
    return result.stdout.strip()


@asynccontextmanager
async def serve(cwd: Path, *args: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, str, str]]:
    proc = await asyncio.create_subprocess_exec(*RIPPLE, "serve", "app.db", "--port", "0", *args, cwd=cwd,
                                                env=ripple_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30 * SECOND)).decode().rstrip("\n")
        match = _STARTED.match(line)
        assert match, line
        yield proc, match.group("url"), match.group("mode")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def stop(proc: asyncio.subprocess.Process) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), 30 * SECOND)
    assert proc.returncode == 0, err
    return out.decode(), err.decode()


def test_create_list_revoke_and_only_a_hash_is_stored(tmp_path: Path) -> None:
    token = create(tmp_path, "web", "--allow", "todos:rw", "--allow", "todo-metrics:r", "--stream", "live:r",
                   "--expires", "30d")
    assert re.fullmatch(r"rpl_[A-Za-z0-9_-]{43}", token)
    admin = create(tmp_path, "ops", "--admin")
    listed = ripple(tmp_path, "token", "list", "--db", "app.db")
    assert listed.returncode == 0
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["name"] for r in rows] == ["web", "ops"]
    assert rows[0]["scopes"] == ["todos:rw", "todo-metrics:r"] and rows[0]["streams"] == ["live:r"]
    assert rows[0]["status"] == "active" and rows[0]["expires_ts"] > rows[0]["created_ts"]
    for secret in (token, admin):
        assert secret not in listed.stdout
        for suffix in ("", "-wal"):
            file = tmp_path / f"app.db{suffix}"
            assert not file.exists() or secret.encode() not in file.read_bytes()
    revoked = ripple(tmp_path, "token", "revoke", "--db", "app.db", "web")
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["status"] == "revoked"
    again = ripple(tmp_path, "token", "list", "--db", "app.db")
    assert json.loads(again.stdout.splitlines()[0])["status"] == "revoked"


BAD_TOKEN_COMMANDS = [
    ("create", "--name", "x"),  # no grant
    ("create", "--name", "x", "--allow", "todos"),  # no access
    ("create", "--name", "x", "--allow", "todos:w"),
    ("create", "--name", "x", "--allow", "todos:r", "--expires", "soon"),
    ("create", "--name", "bad\u200bname", "--allow", "todos:r"),
    ("create", "--name", "taken", "--allow", "todos:r"),  # names are never reused
    ("revoke", "nobody"),
]


def test_bad_token_commands_are_one_line_exit_2(tmp_path: Path) -> None:
    create(tmp_path, "taken", "--allow", "a:r")
    before = ripple(tmp_path, "token", "list", "--db", "app.db").stdout
    for args in BAD_TOKEN_COMMANDS:
        result = ripple(tmp_path, "token", args[0], "--db", "app.db", *args[1:])
        assert result.returncode == 2, (args, result)
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, (args, result)
    assert ripple(tmp_path, "token", "list", "--db", "app.db").stdout == before


def test_a_name_is_never_reused(tmp_path: Path) -> None:
    create(tmp_path, "web", "--allow", "a:r")
    ripple(tmp_path, "token", "revoke", "--db", "app.db", "web")
    result = ripple(tmp_path, "token", "create", "--db", "app.db", "--name", "web", "--allow", "a:r")
    assert result.returncode == 2 and "already exists" in result.stderr


async def test_tokens_work_beside_a_live_server_and_revocation_closes_sessions(tmp_path: Path) -> None:
    create(tmp_path, "first", "--allow", "x:r")  # creates and migrates the file
    async with serve(tmp_path, "--auth", "--access-log") as (proc, url, mode):
        assert mode == "auth: tokens required"
        token = create(tmp_path, "live", "--allow", "todos:rw")  # while the server holds the writer lock
        port = int(url.rsplit(":", 1)[1])
        async with httpx.AsyncClient(base_url=url, timeout=10 * SECOND) as client:
            put = await client.put("/v1/state/todos/a?token=ignored-on-http", json={"v": 1},
                                   headers={"authorization": f"Bearer {token}"})
            assert put.status_code == 201, put.text
            async with connect(f"ws://127.0.0.1:{port}/v1/subscribe?scope=todos&after=0&token={token}") as ws:
                assert json.loads(await ws.recv())["type"] == "hello"
                assert json.loads(await ws.recv())["type"] == "event"
                assert json.loads(await ws.recv())["type"] == "live"
                poll = asyncio.create_task(client.get(  # a long-poll that waits across the revocation
                    "/v1/events", params={"after": put.json()["offset"], "scope": "todos", "kind": "state",
                                          "wait": 30}, headers={"authorization": f"Bearer {token}"}))
                revoked = ripple(tmp_path, "token", "revoke", "--db", "app.db", "live")
                assert revoked.returncode == 0, revoked.stderr
                frame = json.loads(await asyncio.wait_for(ws.recv(), 10 * SECOND))
                assert frame["type"] == "error" and frame["code"] == "unauthorized", frame
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 10 * SECOND)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
                polled = await asyncio.wait_for(poll, 10 * SECOND)  # not the 30 s of its wait, nor its events
                assert polled.status_code == 401, polled.text
            refused = await client.get("/v1/state/todos/a", headers={"authorization": f"Bearer {token}"})
            assert refused.status_code == 401
        out, err = await stop(proc)
    log = out + err
    assert token not in log, "a token was logged"
    assert "token=<redacted>" in log  # the access log shows the WebSocket's query, redacted
    listed = ripple(tmp_path, "log", "--db", "app.db", "--actor", "live")
    assert [json.loads(line)["key"] for line in listed.stdout.splitlines()] == ["a"]
    assert ripple(tmp_path, "log", "--db", "app.db", "--actor", "nobody").stdout == ""


def test_a_network_bind_without_auth_refuses_to_start(tmp_path: Path) -> None:
    result = ripple(tmp_path, "serve", "app.db", "--host", "0.0.0.0", "--port", "0")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--auth" in result.stderr
    assert not (tmp_path / "app.db").exists()  # refused before anything was opened


@pytest.mark.parametrize(("host", "auth", "insecure", "mode"), [
    ("127.0.0.1", False, False, "auth: off (loopback only)"),
    ("localhost", False, False, "auth: off (loopback only)"),
    ("::1", False, False, "auth: off (loopback only)"),
    ("0.0.0.0", True, False, "auth: tokens required"),
    ("192.168.1.20", False, True, "auth: OFF on a network address (--insecure-no-auth)"),
    ("0.0.0.0", False, False, None),
    ("::", False, False, None),
    ("10.1.2.3", False, False, None),
    ("::ffff:10.1.2.3", False, False, None),
])
def test_bind_rules(host: str, auth: bool, insecure: bool, mode: str | None) -> None:
    options = ServeOptions(host=host, auth=auth, insecure_no_auth=insecure)
    if mode is None:
        with pytest.raises(InsecureBindError):
            check_bind(options)
    else:
        check_bind(options)
        assert auth_mode(options) == mode
