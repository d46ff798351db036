"""HTTP write throughput: ripple ``PUT`` (durable) vs a Litestar hello-world POST vs a naive aiosqlite handler.

    python bench/http_writes.py [--seconds 10] [--connections 64]
    python bench/http_writes.py --metrics      # what /metrics and request counting cost a PUT (issue 17)

Every server runs in its own process on uvicorn with the same settings (one worker, default HTTP implementation,
no access log, log level warning) on 127.0.0.1. The load generator is ``wrk`` (Debian: ``apt-get install wrk``), a
separate process: one thread, N keep-alive connections, a Lua script per target. Printed side by side: requests/s,
p50/p99 latency, non-2xx answers, and the ratios ripple PUT / hello POST and ripple PUT / naive insert+commit.

Targets:
  hello        Litestar POST /hello: reads the body, answers a small JSON object (Litestar's floor)
  naive        Litestar POST /items: one aiosqlite INSERT + COMMIT per request (WAL, synchronous=FULL)
  ripple-put   ripple serve (durability full): PUT /v1/state/bench/k<random of 10,000>
  ripple-put-normal  the same with --durability normal
  ripple-get   ripple serve: GET of one existing key
  ripple-put-normal-nometrics  ripple-put-normal with --no-metrics (no /metrics, no request or write counting)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BODY = '{"title":"buy milk","completed":false,"n":42}'

LUA_POST = """
wrk.method = "POST"
wrk.body = '%(body)s'
wrk.headers["Content-Type"] = "application/json"
wrk.path = "%(path)s"
"""

LUA_PUT = """
local body = '%(body)s'
local headers = {["Content-Type"] = "application/json"}
math.randomseed(os.time())
request = function()
  return wrk.format("PUT", "/v1/state/bench/k" .. math.random(1, 10000), headers, body)
end
"""

LUA_GET = """
wrk.method = "GET"
wrk.path = "/v1/state/bench/hot"
"""


# ---- the comparison servers (run in their own process with --serve) -------------------------------------------


def hello_app() -> Any:
    from litestar import Litestar, Request, post

    @post("/hello", status_code=200)
    async def hello(request: Request[Any, Any, Any]) -> dict[str, Any]:
        await request.body()
        return {"hello": "world"}

    return Litestar([hello], logging_config=None)


def naive_app(db: str) -> Any:
    import aiosqlite
    from litestar import Litestar, Request, post

    state: dict[str, aiosqlite.Connection] = {}

    async def open_db() -> None:
        conn = await aiosqlite.connect(db)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=FULL")
        await conn.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, body TEXT)")
        await conn.commit()
        state["conn"] = conn

    async def close_db() -> None:
        await state["conn"].close()

    @post("/items", status_code=201)
    async def insert(request: Request[Any, Any, Any]) -> dict[str, int]:
        body = await request.body()
        conn = state["conn"]
        cur = await conn.execute("INSERT INTO items (body) VALUES (?)", (body.decode(),))
        await conn.commit()
        return {"id": cur.lastrowid or 0}

    return Litestar([insert], on_startup=[open_db], on_shutdown=[close_db], logging_config=None)


def serve_comparison(kind: str, port: int, db: str) -> None:
    import uvicorn

    app = hello_app() if kind == "hello" else naive_app(db)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# ---- driver ------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_listening(port: int, proc: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)  # readiness poll of a child process; bounded
    raise RuntimeError("server did not start")


def start(target: str, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if target.startswith("ripple"):
        durability = "normal" if "normal" in target else "full"
        db = workdir / f"{target}-{time.monotonic_ns()}.db"
        cmd = [sys.executable, "-m", "ripple", "serve", str(db), "--port", str(port), "--durability", durability]
        if target.endswith("nometrics"):
            cmd.append("--no-metrics")
    else:
        cmd = [sys.executable, __file__, "--serve", target, str(port), str(workdir / f"{target}.db")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_listening(port, proc)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _ms(text: str) -> float:
    value, unit = float(re.match(r"[\d.]+", text).group()), re.sub(r"[\d.]+", "", text)  # type: ignore[union-attr]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(port: int, lua: str, seconds: int, connections: int, workdir: Path) -> dict[str, float]:
    script = workdir / "script.lua"
    script.write_text(lua)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": float(bad.group(1)) if bad else 0.0, "sockerr": bool(errors)}


def bench(target: str, seconds: int, connections: int, workdir: Path) -> dict[str, float]:
    port = free_port()
    proc = start(target, port, workdir)
    try:
        if target == "hello":
            lua = LUA_POST % {"body": BODY, "path": "/hello"}
        elif target == "naive":
            lua = LUA_POST % {"body": BODY, "path": "/items"}
        elif target == "ripple-get":
            subprocess.run(
                ["curl", "-sf", "-X", "PUT", "-H", "content-type: application/json", "-d", BODY,
                 f"http://127.0.0.1:{port}/v1/state/bench/hot"],
                check=True, capture_output=True,
            )  # fmt: skip
            lua = LUA_GET
        else:
            lua = LUA_PUT % {"body": BODY}
        return run_wrk(port, lua, seconds, connections, workdir)
    finally:
        stop(proc)


def metrics_cost(seconds: int, connections: int, rounds: int) -> None:
    """ripple PUT (durability normal: the CPU, not the disk's fsync, is the limit, so a per-request cost shows) with
    and without --no-metrics, alternating; the best of each and the ratio."""
    rates: dict[str, list[float]] = {"ripple-put-normal-nometrics": [], "ripple-put-normal": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for target, runs in rates.items():
                r = bench(target, seconds, connections, Path(tmp))
                runs.append(r["rps"])
                print(f"  ran {target}: {r['rps']:.0f} req/s, p99 {r['p99']:.2f} ms", file=sys.stderr, flush=True)
    off, on = max(rates["ripple-put-normal-nometrics"]), max(rates["ripple-put-normal"])
    print(f"wrk -t1 -c{connections} -d{seconds}s, durability normal, best of {rounds} alternating runs, "
          f"{os.cpu_count()} cores")
    print(f"ripple PUT --no-metrics  {off:>8.0f} req/s")
    print(f"ripple PUT (metrics on)  {on:>8.0f} req/s")
    print(f"with / without           {on / off:>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--serve", nargs=3, metavar=("KIND", "PORT", "DB"), help=argparse.SUPPRESS)
    parser.add_argument("--metrics", action="store_true", help="only ripple PUT with and without metrics")
    parser.add_argument("--rounds", type=int, default=3, help="with --metrics: alternating rounds (default 3)")
    args = parser.parse_args()
    if args.serve:
        serve_comparison(args.serve[0], int(args.serve[1]), args.serve[2])
        return
    if shutil.which("wrk") is None:
        sys.exit("this benchmark drives load with wrk: apt-get install wrk")
    if args.metrics:
        metrics_cost(args.seconds, args.connections, args.rounds)
        return
    targets = ["hello", "naive", "ripple-put", "ripple-put-normal", "ripple-get"]
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for target in targets:
            results[target] = bench(target, args.seconds, args.connections, Path(tmp))
            r = results[target]
            print(f"  ran {target}: {r['rps']:.0f} req/s", file=sys.stderr, flush=True)
    print(f"\nwrk -t1 -c{args.connections} -d{args.seconds}s, uvicorn one worker, 127.0.0.1, {os.cpu_count()} cores\n")
    print(f"{'target':<20}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>10}")
    for target, r in results.items():
        print(f"{target:<20}{r['rps']:>10.0f}{r['p50']:>10.2f}{r['p99']:>10.2f}{r['non2xx']:>10.0f}")
    put, hello, naive = results["ripple-put"]["rps"], results["hello"]["rps"], results["naive"]["rps"]
    print(f"\nripple PUT (full) / hello POST      = {put / hello:.2f}x   (target >= 0.75x)")
    print(f"ripple PUT (full) / naive insert    = {put / naive:.2f}x   (target >= 1.1x)")
    print(f"ripple PUT (normal) / hello POST    = {results['ripple-put-normal']['rps'] / hello:.2f}x")
    print(f"ripple GET / hello POST             = {results['ripple-get']['rps'] / hello:.2f}x")


if __name__ == "__main__":
    main()
