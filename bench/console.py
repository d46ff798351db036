"""The console with N events in the file (default 1M): ``ripple import`` of a generated log, ``ripple serve``, then
headless Chromium opens ``/`` and measures what a user feels.

- first rows: from navigation to the newest events on screen;
- jump: typing an offset in the middle of the log until its row is on screen;
- fling: scrolling up 200 screens in 240 frames (pages fetched on demand above): frame times;
- sparse filter: a scope holding 0.1 % of the events, until its newest rows are on screen;
- streaming: 2,000 events/s written while the console follows them: frame times and how far behind the page is;
- memory: the page's JS heap at the end.

Usage: python bench/console.py [--events N]   (needs Chromium and playwright, as tests/browser do)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ripple.wire import WireEvent  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.fault.child import ServeChild  # noqa: E402

NULL = msgspec.Raw(b"null")
EMPTY = msgspec.Raw(b"{}")


def scope_of(seq: int) -> str:
    """Most events in `todos`, some in `users`, a sparse 0.1 % in `audit`."""
    if seq % 1000 == 7:
        return "audit"
    return "users" if seq % 10 == 3 else "todos"


def write_jsonl(path: Path, n: int, keys: int = 10_000) -> None:
    """A valid log for ``ripple import``: creates, updates and deletes, with each event's old value chained."""
    encode = msgspec.json.Encoder().encode
    values: dict[tuple[str, str], tuple[bytes, int]] = {}
    ts = int(time.time() * 1000) - n
    with path.open("wb") as out:
        for seq in range(1, n + 1):
            scope = scope_of(seq)
            key = f"k{seq * 7919 % keys}"
            old = values.get((scope, key))
            if old is not None and seq % 13 == 0:
                record = WireEvent(seq, ts + seq, "state", scope, key, "delete", "deleted", 0, msgspec.Raw(old[0]),
                                   NULL, EMPTY)
                del values[(scope, key)]
            else:
                new = encode({"id": key, "title": f"item {seq}", "done": seq % 2 == 0, "tags": ["a", "b"]})
                version = 1 if old is None else old[1] + 1
                record = WireEvent(seq, ts + seq, "state", scope, key, "set", "created" if old is None else "updated",
                                   version, NULL if old is None else msgspec.Raw(old[0]), msgspec.Raw(new), EMPTY)
                values[(scope, key)] = (new, version)
            out.write(encode(record) + b"\n")


FRAMES = """async ([count, step]) => {
  const v = document.getElementById('log-viewport');
  const times = [];
  let last = performance.now();
  for (let i = 0; i < count; i++) {
    v.scrollTop = Math.max(0, v.scrollTop + step);
    await new Promise(r => requestAnimationFrame(r));
    const now = performance.now();
    times.push(now - last);
    last = now;
  }
  return times;
}"""

WATCH_FRAMES = """async (ms) => {
  const times = [];
  let last = performance.now();
  const end = last + ms;
  while (performance.now() < end) {
    await new Promise(r => requestAnimationFrame(r));
    const now = performance.now();
    times.push(now - last);
    last = now;
  }
  return times;
}"""


def frame_summary(times: list[float]) -> str:
    times = sorted(times)
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    slow = sum(1 for t in times if t > 50)
    return f"{len(times)} frames, p50 {p50:.1f} ms, p99 {p99:.1f} ms, {slow} over 50 ms"


async def until(page: Any, predicate: str, arg: Any = None) -> float:
    t = time.perf_counter()
    await page.wait_for_function(predicate, arg=arg, timeout=120_000)
    return (time.perf_counter() - t) * 1000


async def write_load(url: str, rate: int, seconds: float) -> int:
    """``rate`` events/s as batches of 100 (20 batches/s), for ``seconds``."""
    sent = 0
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            commands = [{"op": "set", "scope": "live", "key": f"l{sent + i}", "value": {"i": sent + i}}
                        for i in range(100)]
            assert (await http.post("/v1/batch", json={"commands": commands})).status_code == 200
            sent += 100
            behind = start + sent / rate - time.perf_counter()
            if behind > 0:
                await asyncio.sleep(behind)  # sleep-ok: pacing the load
    return sent


async def measure(url: str, n: int) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        t = time.perf_counter()
        await page.goto(url + "/")
        await page.wait_for_function(
            f"() => document.querySelector(\"#log-viewport .row[data-offset='{n}']:not([hidden])\")", timeout=120_000)
        print(f"- first rows (newest events on screen): {(time.perf_counter() - t) * 1000:.0f} ms")

        middle = n // 2
        await page.fill("#f-jump", str(middle))
        ms = 0.0
        t = time.perf_counter()
        await page.press("#f-jump", "Enter")
        await page.wait_for_function(
            f"() => document.querySelector(\"#log-viewport .row[data-offset='{middle}']:not([hidden])\")")
        ms = (time.perf_counter() - t) * 1000
        print(f"- jump to offset {middle:,}: {ms:.0f} ms")

        await page.click("#tail-button")
        await page.wait_for_function("() => rippleConsole.log.atTail")
        times = await page.evaluate(FRAMES, [240, -(200 * 800) // 240])
        loaded = await page.evaluate("rippleConsole.log.rows.length")
        print(f"- fling up 200 screens in 240 frames: {frame_summary(times)}; {loaded:,} events in the window")

        await page.fill("#f-scope", "audit")
        t = time.perf_counter()
        await page.click("#log-filter button[type=submit]")
        await page.wait_for_function(
            "() => rippleConsole.log.atTail && rippleConsole.log.rows.length > 0 "
            "&& rippleConsole.log.rows.every(r => r.scope === 'audit')", timeout=120_000)
        rows = await page.evaluate("rippleConsole.log.rows.length")
        print(f"- sparse filter (scope audit, 0.1 %): {(time.perf_counter() - t) * 1000:.0f} ms to its newest "
              f"{rows} rows")
        await page.fill("#f-scope", "")
        await page.click("#log-filter button[type=submit]")
        await page.wait_for_function("() => rippleConsole.log.atTail")

        load = asyncio.create_task(write_load(url, 2000, 10))
        times = await page.evaluate(WATCH_FRAMES, 10_000)
        sent = await load
        await page.wait_for_function(f"() => rippleConsole.log.rows.at(-1).offset >= {n + sent}", timeout=60_000)
        print(f"- streaming 2,000 events/s for 10 s while following: {frame_summary(times)}")
        heap = await page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0")
        print(f"- JS heap at the end: {heap / 1e6:.0f} MB")
        await browser.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.events
    with tempfile.TemporaryDirectory() as tmp:
        jsonl, db = Path(tmp) / "events.jsonl", Path(tmp) / "console.db"
        t = time.perf_counter()
        write_jsonl(jsonl, n)
        with jsonl.open("rb") as source:
            subprocess.run([sys.executable, "-m", "ripple", "import", "--db", str(db)], stdin=source, check=True,
                           cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"machine: {os.cpu_count()} cores; {n:,} events imported in {time.perf_counter() - t:.0f} s "
              f"({db.stat().st_size / 1e6:.0f} MB)")
        server = await ServeChild(db).start()
        try:
            await measure(server.url, n)
        finally:
            await server.stop()


if __name__ == "__main__":
    asyncio.run(main())
