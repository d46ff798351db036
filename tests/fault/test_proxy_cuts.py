"""Broken connections (issue 9, part 2): a chaos TCP proxy between the clients and a real ``ripple serve`` cuts (some
mid-frame), stalls and delays connections at random. ``ripple.client`` subscribers across the cuts end with exactly
the log's matching events, in order; HTTP writers that retry with the same ``Idempotency-Key`` through the same proxy
end with each write in the log exactly once, at the offset they were finally told."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import httpx

from tests.conftest import SECOND, count
from tests.fault.child import ServeChild
from tests.fault.proxy import Proxy
from tests.fault.subscribers import Recorder, assert_gapless, read_log, wait_all


async def idempotent_writer(url: str, n: int, stop: asyncio.Event, acked: dict[str, int]) -> int:
    """PUTs with an Idempotency-Key, each retried until acknowledged; returns how many retries the cuts caused."""
    retries = 0
    i = 0
    async with httpx.AsyncClient(base_url=url, timeout=5 * SECOND) as c:
        while not stop.is_set():
            key = f"w{n}-{i}"
            while True:
                try:
                    r = await c.put(f"/v1/state/net/{key}", json={"i": i}, headers={"Idempotency-Key": key})
                except httpx.TransportError:
                    retries += 1
                    continue  # same key again: the first attempt may have committed
                assert r.status_code in (200, 201), r.text
                acked[key] = r.json()["offset"]
                break
            i += 1
    return retries


async def direct_writer(url: str, stop: asyncio.Event) -> None:
    """Steady load that does not cross the proxy: batches in several scopes, and stream sends."""
    async with httpx.AsyncClient(base_url=url, timeout=10 * SECOND) as c:
        i = 0
        while not stop.is_set():
            commands = [{"op": "set", "scope": f"s{j % 3}", "key": f"k{i}-{j}", "value": {"i": i}} for j in range(20)]
            assert (await c.post("/v1/batch", json={"commands": commands})).status_code == 200
            r = await c.post("/v1/streams/feed/g", json={"type": "tick", "data": i})
            assert r.status_code == 201, r.text
            i += 1


async def test_subscribers_get_exactly_the_log_across_proxy_cuts(tmp_path: Path) -> None:
    cuts, seed = count(100, 1000), random.randrange(1 << 30)
    rng = random.Random(seed)
    server = await ServeChild(tmp_path / "net.db", "--heartbeat", "0.2").start()
    proxy = await Proxy(server.port).start()
    stop = asyncio.Event()
    acked: dict[str, int] = {}
    recorders = [
        Recorder(proxy.url, "all", kind="all"),
        Recorder(proxy.url, "state"),
        Recorder(proxy.url, "s0", scopes=["s0"]),
        Recorder(proxy.url, "s1+net", scopes=["s1", "net"]),
        Recorder(proxy.url, "net", scopes=["net"]),
        Recorder(proxy.url, "stream", kind="stream"),
    ]
    writers: list[asyncio.Task[object]] = []
    try:
        for rec in recorders:
            rec.start()
        writers = [asyncio.create_task(idempotent_writer(proxy.url, n, stop, acked)) for n in range(3)]
        writers.append(asyncio.create_task(direct_writer(server.url, stop)))
        chaos = asyncio.create_task(proxy.chaos(rng, cuts))
        done, _ = await asyncio.wait({chaos, *writers}, timeout=120 * SECOND, return_when=asyncio.FIRST_COMPLETED)
        assert chaos in done, f"chaos did not finish: {proxy.counters}"
        await chaos
        proxy.calm()
        stop.set()
        retries = sum(r for r in await asyncio.wait_for(asyncio.gather(*writers), 30 * SECOND) if isinstance(r, int))
        async with httpx.AsyncClient(base_url=server.url, timeout=30 * SECOND) as c:
            log = await read_log(c)
        assert_gapless(log)
        per_key = Counter(e["key"] for e in log if e["scope"] == "net")
        assert set(per_key.values()) == {1}, "an idempotent retry was written twice"
        offsets = {e["key"]: e["offset"] for e in log if e["scope"] == "net"}
        assert offsets == acked
        await wait_all(recorders, log, 60 * SECOND)
        for rec in recorders:
            rec.check(log)
        c_ = proxy.counters
        print(
            f"\nFIGURES proxy-cuts: cuts {c_.cuts} (mid-frame {c_.torn}), stalls {c_.stalls}, delays {c_.delays}, "
            f"connections {c_.connections}, events {len(log)}, subscribers {len(recorders)}, lost 0, duplicated 0, "
            f"idempotent writes {len(acked)} ({retries} retried after a cut), seed {seed}"
        )
    finally:
        stop.set()
        for task in writers:
            task.cancel()
        await asyncio.gather(*writers, return_exceptions=True)
        for rec in recorders:
            await rec.close()
        await proxy.close()
        assert await server.stop() == 0, server.stderr()
        assert "Traceback" not in server.stderr(), server.stderr()
