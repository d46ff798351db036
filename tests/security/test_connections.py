"""Slow clients and floods cannot starve the others (DESIGN §15, ripple.http.connections), on both of uvicorn's HTTP
protocols: header and body timeouts (slowloris), the keep-alive timeout, the connection cap, and running out of file
descriptors (a ``ripple serve`` child under a low RLIMIT_NOFILE) without a log flood. Loopback only, seconds each."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import re
import resource
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from ripple.http.connections import ConnectionLimits, HttpImplementation
from ripple.http.serve import ServeOptions
from tests.conftest import RIPPLE, SECOND, ripple_env
from tests.security.conftest import Served, serving

IMPLEMENTATIONS = [
    "h11",
    pytest.param("httptools", marks=pytest.mark.skipif(importlib.util.find_spec("httptools") is None,
                                                       reason="httptools is not installed (pip install httptools)")),
]
HEAD = b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"


@asynccontextmanager
async def limited(tmp_path: Path, http: HttpImplementation, **limits: float) -> AsyncIterator[Served]:
    options = ServeOptions(db=str(tmp_path / "c.db"), port=0, connections=ConnectionLimits(**limits), http=http)  # type: ignore[arg-type]
    async with serving(tmp_path / "c.db", options=options) as served:
        yield served


async def answer_then_eof(reader: asyncio.StreamReader, within: float) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), within * SECOND)


async def served_meanwhile(served: Served, until: asyncio.Event) -> int:
    """A well-behaved client's requests while the slow ones hog connections: how many succeeded."""
    ok = 0
    async with served.client() as client:
        while not until.is_set():
            response = await client.get("/v1/health")
            assert response.status_code == 200
            ok += 1
            await asyncio.sleep(0.05)  # sleep-ok: pacing a steady client, not synchronising
    return ok


@pytest.mark.parametrize("http", IMPLEMENTATIONS)
async def test_slowloris_heads_are_cut_off_and_others_are_served(tmp_path: Path, http: HttpImplementation) -> None:
    async with limited(tmp_path, http, header_timeout=1.0) as served:

        async def slowloris() -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            answer = asyncio.ensure_future(answer_then_eof(reader, 10))
            writer.write(HEAD)
            try:
                for i in range(100):  # a header line every 0.2 s: 20 s if nobody stopped it
                    if answer.done():
                        break  # the server answered and closed: writing on would only reset the connection
                    writer.write(f"X-Slow-{i}: 1\r\n".encode())
                    await writer.drain()
                    await asyncio.sleep(0.2)  # sleep-ok: a slowloris client paces its bytes
                return await answer
            finally:
                writer.close()

        done = asyncio.Event()
        steady = asyncio.create_task(served_meanwhile(served, done))
        answers = await asyncio.wait_for(asyncio.gather(*(slowloris() for _ in range(20))), 15 * SECOND)
        done.set()
        assert await steady > 0
    for answer in answers:
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "request_timeout"


@pytest.mark.parametrize("http", IMPLEMENTATIONS)
async def test_silent_connections_slow_bodies_and_idle_keep_alives_are_closed(tmp_path: Path,
                                                                            http: HttpImplementation) -> None:
    async with limited(tmp_path, http, header_timeout=1.0, body_timeout=1.0, keep_alive_timeout=1.0) as served:
        silent_reader, silent = await asyncio.open_connection("127.0.0.1", served.port)
        body_reader, body = await asyncio.open_connection("127.0.0.1", served.port)
        body.write(b"PUT /v1/state/s/k HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                   b"content-length: 100\r\n\r\n[")

        body_closed = asyncio.ensure_future(answer_then_eof(body_reader, 10))

        async def dribble() -> None:
            with contextlib.suppress(ConnectionError):
                for _ in range(60):
                    if body_closed.done():
                        return
                    body.write(b"1,")
                    await body.drain()
                    await asyncio.sleep(0.2)  # sleep-ok: a slow body, paced

        dribbling = asyncio.create_task(dribble())
        idle_reader, idle = await asyncio.open_connection("127.0.0.1", served.port)
        idle.write(HEAD + b"\r\n")
        head = await asyncio.wait_for(idle_reader.readuntil(b"\r\n\r\n"), 5 * SECOND)
        assert head.startswith(b"HTTP/1.1 200")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length"))
        await asyncio.wait_for(idle_reader.readexactly(length), 5 * SECOND)  # the whole answer: now it is idle
        assert await answer_then_eof(silent_reader, 10) == b""  # nothing sent, nothing answered: closed
        assert await answer_then_eof(idle_reader, 10) == b""  # keep-alive timeout
        await body_closed  # the body never finished: closed
        await dribbling
        for writer in (silent, body, idle):
            writer.close()
        assert served.store.head == 0  # the unfinished body wrote nothing
        async with served.client() as client:
            assert (await client.get("/v1/health")).status_code == 200


@pytest.mark.parametrize("http", IMPLEMENTATIONS)
async def test_the_connection_cap_answers_503(tmp_path: Path, http: HttpImplementation) -> None:
    async with limited(tmp_path, http, header_timeout=30.0, max_connections=5) as served:
        held = [await asyncio.open_connection("127.0.0.1", served.port) for _ in range(5)]
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        answer = await answer_then_eof(reader, 10)
        assert answer.startswith(b"HTTP/1.1 503"), answer[:80]
        assert b"retry-after: 1" in answer.lower()
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "too_many_connections"
        for _, w in held:
            w.close()
        writer.close()
        async with served.client() as client:  # the held connections are gone: room again
            for _ in range(20):
                with contextlib.suppress(httpx.RemoteProtocolError, httpx.ReadError):
                    if (await client.get("/v1/health")).status_code == 200:
                        break
            else:
                pytest.fail("the server never took a new connection after the others closed")


@pytest.mark.parametrize("http", IMPLEMENTATIONS)
async def test_an_unparseable_request_gets_a_json_400(tmp_path: Path, http: HttpImplementation) -> None:
    async with limited(tmp_path, http) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bad: a\x7fb\x00\r\n\r\n")
        answer = await answer_then_eof(reader, 10)
        writer.close()
    assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "bad_request"


def _limit_fds() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
async def test_out_of_file_descriptors_sheds_without_a_log_flood(tmp_path: Path, loop: str) -> None:
    """asyncio: ripple's shedding socket answers the connections it cannot afford 503 and logs one line. uvloop:
    libuv accepts and closes them itself (the same reserve-descriptor trick), with no answer and no log line."""
    proc = await asyncio.create_subprocess_exec(
        *RIPPLE, "serve", "fd.db", "--port", "0", "--header-timeout", "2", "--max-connections", "100000",
        "--loop", loop, cwd=tmp_path, env=ripple_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=_limit_fds)
    hogs: list[asyncio.StreamWriter] = []
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30 * SECOND)).decode()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        assert url, line
        port = int(url.group().rsplit(":", 1)[1])
        async with httpx.AsyncClient(base_url=url.group(), timeout=10 * SECOND) as keeper:
            assert (await keeper.get("/v1/health")).status_code == 200  # connected before the flood
            readers = []
            for _ in range(200):  # silent connections: each holds a descriptor until the header timeout
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                readers.append(reader)
                hogs.append(writer)

            async def first_bytes(reader: asyncio.StreamReader) -> bytes | None:
                """The first bytes the server sent (``b""``: it closed the connection); None: nothing yet."""
                with contextlib.suppress(TimeoutError):
                    try:
                        return await asyncio.wait_for(reader.read(12), 1.0 * SECOND)
                    except ConnectionError:
                        return b""
                return None

            firsts = await asyncio.gather(*(first_bytes(r) for r in readers))
            if loop == "asyncio":
                shed = sum(first is not None and first.startswith(b"HTTP/1.1 503") for first in firsts)
            else:
                shed = sum(first == b"" for first in firsts)
            assert shed > 0, "the server never ran out of descriptors: raise the flood"
            for i in range(5):  # the established connection is still served, writes included
                assert (await keeper.put(f"/v1/state/s/{i}", json=i)).status_code == 201
        for writer in hogs:
            writer.close()
        hogs.clear()
        async with httpx.AsyncClient(base_url=url.group(), timeout=10 * SECOND) as fresh:
            for _ in range(50):  # the hogs are closed (by us, or by the header timeout): new clients get in
                with contextlib.suppress(httpx.TransportError):
                    if (await fresh.get("/v1/health")).status_code == 200:
                        break
                await asyncio.sleep(0.1)  # sleep-ok: retrying a refused connect while descriptors free up
            else:
                pytest.fail("no new client was served after the flood")
    finally:
        for writer in hogs:
            writer.close()
        if proc.returncode is None:
            proc.terminate()
        _, err = await asyncio.wait_for(proc.communicate(), 30 * SECOND)
    text = err.decode()
    assert "Traceback" not in text, text[:2000]
    fd_lines = [ln for ln in text.splitlines() if "file descriptors" in ln]
    assert (1 if loop == "asyncio" else 0) <= len(fd_lines) <= 3, text[:2000]
    assert len(text) < 10_000


@pytest.mark.parametrize("http", IMPLEMENTATIONS)
async def test_a_head_that_never_ends_gets_431_and_a_large_body_still_passes(tmp_path: Path,
                                                                            http: HttpImplementation) -> None:
    """httptools buffers a request head without limit (300 MB in a second grew the server by as much): past 64 KiB
    of head the connection gets 431 with the JSON error body and is closed; h11 refuses such a head by itself."""
    async with limited(tmp_path, http) as served:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        filler = b"X-Filler: " + b"a" * (65536 + 1 - len(HEAD) - len(b"X-Filler: "))
        writer.write(HEAD + filler)  # one byte over the limit: the last byte crosses it, nothing is left unread
        try:
            answer = await answer_then_eof(reader, 10)
        except ConnectionResetError:
            assert http == "h11", "h11 refuses at its own 16 KiB limit, before the rest has arrived"
            answer = b""
        writer.close()
        if http == "httptools":
            assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:100]
            error = json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
            assert error["code"] == "headers_too_large" and error["detail"] == {"limit": 65536}
        elif answer:
            assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
        async with served.client() as client:  # a body far larger than the head limit, in large chunks, is fine
            big = {"blob": "x" * 900_000}
            assert (await client.put("/v1/state/s/big", json=big)).status_code == 201
            headers = {f"X-Ok-{i}": "b" * 900 for i in range(40)}  # a 36 KiB head is under the limit
            assert (await client.get("/v1/health", headers=headers)).status_code == 200
