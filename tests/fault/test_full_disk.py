"""Full disk (issue 9, part 3), through the HTTP server.

1. ``PRAGMA max_page_count`` on the writer connection of a real server on a free port: every kind of write over HTTP
   fails with 507 and the DESIGN §8 error body while small writes that still fit commit; nothing committed is harmed,
   offsets stay gapless, a subscriber sees exactly the log, and writes succeed again once space is back.
2. A real full file system: ``ripple serve`` on a tiny tmpfs (root only; skipped where mounting is not allowed) filled
   to the brim, then grown (``mount -o remount,size=``) as an operator would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ripple import Store
from tests.conftest import SECOND
from tests.fault.child import ServeChild, run_verify
from tests.fault.subscribers import Recorder, assert_gapless, read_log, wait_all
from tests.http.conftest import error_of, start_server, stop_server

BIG = "x" * 200_000


def full_body(response: httpx.Response) -> None:
    error = error_of(response, 507, "database_full")
    assert "full" in error["message"]


async def write_attempts(c: httpx.AsyncClient, tag: str) -> list[httpx.Response]:
    """One of each kind of write, each too big to fit."""
    return [
        await c.put(f"/v1/state/big/{tag}-put", json={"v": BIG}),
        await c.patch(f"/v1/state/big/{tag}-patch", json={"ops": [{"type": "set", "path": "v", "value": BIG}]}),
        await c.post("/v1/batch", json={"commands": [{"op": "set", "scope": "big", "key": f"{tag}-b", "value": BIG}]}),
        await c.post("/v1/streams/big/g", json={"type": "blob", "data": BIG}),
    ]


async def test_full_database_over_http_fails_with_507_and_recovers(tmp_path: Path) -> None:
    async with Store.open(tmp_path / "full.db") as store:
        server, task = await start_server(store)
        url = f"http://127.0.0.1:{server.port}"
        recorder = Recorder(url, "all", kind="all").start()
        try:
            async with httpx.AsyncClient(base_url=url, timeout=30 * SECOND) as c:
                for i in range(50):
                    assert (await c.put(f"/v1/state/s/k{i}", json={"i": i})).status_code == 201
                before = await read_log(c)
                pages = await store.writer.call(lambda conn: conn.execute("PRAGMA page_count").fetchone()[0])
                await store.writer.call(lambda conn: conn.execute(f"PRAGMA max_page_count = {pages}"))

                for response in await write_attempts(c, "one"):
                    full_body(response)
                assert store.head == 50
                # concurrent big and small writes share group commits: the big ones fail, small ones may still fit
                results = await asyncio.gather(
                    *(c.put(f"/v1/state/mix/m{i}", json={"v": BIG if i % 2 else i}) for i in range(40))
                )
                acked: dict[str, tuple[int, Any]] = {}
                for i, r in enumerate(results):
                    if i % 2:
                        full_body(r)
                    elif r.status_code != 201:
                        full_body(r)
                    else:
                        acked[f"m{i}"] = (r.json()["offset"], i)
                health = (await c.get("/v1/health")).json()
                assert health["head"] == store.head == 50 + len(acked)
                during = await read_log(c)
                assert during[:50] == before  # nothing committed was harmed
                assert_gapless(during)
                for i in range(50):
                    assert (await c.get(f"/v1/state/s/k{i}")).json() == {"i": i}

                await store.writer.call(lambda conn: conn.execute("PRAGMA max_page_count = 4294967294"))
                for response in await write_attempts(c, "two"):
                    assert response.status_code in (200, 201), response.text[:300]  # batch: 200
                after = await read_log(c)
                assert_gapless(after)
                assert after[: len(during)] == during
                for key, (offset, value) in acked.items():
                    got = await c.get(f"/v1/state/mix/{key}")
                    assert (got.json(), got.headers["etag"]) == ({"v": value}, f'"{offset}"')
                await wait_all([recorder], after, 30 * SECOND)
                recorder.check(after)
        finally:
            await recorder.close()
            await stop_server(server, task)
    verified = run_verify(tmp_path / "full.db")
    assert verified.returncode == 0, verified.stdout + verified.stderr


@contextlib.contextmanager
def tiny_tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


async def test_full_file_system_under_ripple_serve(tmp_path: Path) -> None:
    with tiny_tmpfs(tmp_path / "disk", "3m") as disk:
        db = disk / "tiny.db"
        server = await ServeChild(db).start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30 * SECOND) as c:
                acked: dict[str, int] = {}
                statuses: list[int] = []
                for i in range(200):  # fill the file system (WAL, database) until writes are refused
                    r = await c.put(f"/v1/state/fill/k{i}", json={"i": i, "pad": "y" * 20_000})
                    statuses.append(r.status_code)
                    if r.status_code == 201:
                        acked[f"k{i}"] = r.json()["offset"]
                    else:
                        full_body(r)
                        if statuses[-3:] == [507, 507, 507]:
                            break
                assert 507 in statuses, "the file system never filled up"
                head = (await c.get("/v1/health")).json()["head"]
                assert head == len(acked)
                log = await read_log(c)
                assert_gapless(log)
                assert {e["key"]: e["offset"] for e in log} == acked
                small = await c.put("/v1/state/fill/small", json=1)
                assert small.status_code in (201, 507), small.text
                if small.status_code == 507:
                    full_body(small)
                # space comes back, as when an operator grows the volume
                subprocess.run(["mount", "-o", "remount,size=16m", str(disk)], check=True)
                after = await c.put("/v1/state/fill/after", json={"ok": True})
                assert after.status_code == 201, after.text
                log = await read_log(c)
                assert_gapless(log)
                print(f"\nFIGURES full-fs: {len(acked)} writes fit in 3 MiB, then {statuses.count(507)} x 507; "
                      f"after growing: head {log[-1]['offset']}, gapless")
            assert await server.stop() == 0, server.stderr()
        finally:
            await server.kill()
        assert "Traceback" not in server.stderr(), server.stderr()
        verified = run_verify(db)
        assert verified.returncode == 0, verified.stdout + verified.stderr

