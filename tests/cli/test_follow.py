"""``ripple log --follow`` tails the file a running ``ripple serve`` writes."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import httpx

from tests.conftest import RIPPLE, SECOND, ripple_env
from tests.http.test_serve import serving, stop


async def test_log_follow_sees_writes_of_a_running_server(tmp_path: Path) -> None:
    async with serving(tmp_path, "--port", "0") as (server, url, db):
        async with httpx.AsyncClient(base_url=url) as client:
            for i in range(3):
                assert (await client.put(f"/v1/state/before/k{i}", json=i)).status_code == 201
            follower = await asyncio.create_subprocess_exec(*RIPPLE, "log", "--db", db, "--follow",
                                                            "--scope", "live", env=ripple_env(),
                                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                assert follower.stdout is not None
                seen = []
                for i in range(20):
                    r = await client.put(f"/v1/state/live/k{i}", json={"i": i})
                    assert r.status_code == 201
                    line = await asyncio.wait_for(follower.stdout.readline(), 10 * SECOND)
                    event = json.loads(line)
                    seen.append(event["offset"])
                    assert (event["scope"], event["key"], event["new_value"]) == ("live", f"k{i}", {"i": i})
                assert seen == list(range(4, 24))
            finally:
                follower.kill()
                await follower.wait()
        code, _, err = await stop(server)
        assert code == 0, err
