"""HTTP write throughput: ripple ``PUT`` (durable) vs a Litestar hello-world POST vs a naive aiosqlite handler.

    python bench/http_writes.py [--seconds 5] [--connections 64] [--rounds 3] [--stack fast,pure]
    python bench/http_writes.py --metrics      # what /metrics and request counting cost a PUT

Every server runs in its own process on uvicorn with the same settings (one worker, no access log, log level
warning) on 127.0.0.1, and on the same stack: ``fast`` = uvloop + httptools (uvicorn[standard]'s loop and parser),
``pure`` = asyncio's loop + h11. The load generator is ``wrk`` (Debian: ``apt-get install wrk``), a separate process:
one thread, N keep-alive connections, a Lua script per target. Targets run in turn, round after round, so each
ratio compares runs made a few seconds apart; printed: the median requests/s and latencies of each target, and the
median over rounds of each round's ratio ripple PUT / hello POST and ripple PUT / naive insert+commit. Each
server's CPU per request (user + system, every thread, from /proc) is printed too, with its ratio: what a CPU-bound
run would show, steadier than requests/s on a shared machine.

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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from summary import record  # noqa: E402

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


STACKS = {"fast": ("uvloop", "httptools"), "pure": ("asyncio", "h11")}


def serve_comparison(kind: str, port: int, db: str, stack: str) -> None:
    import uvicorn

    loop, http = STACKS[stack]
    app = hello_app() if kind == "hello" else naive_app(db)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop=loop, http=http)


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


def start(target: str, port: int, workdir: Path, stack: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    db = workdir / f"{target}-{port}.db"
    if target.startswith("ripple"):
        durability = "normal" if "normal" in target else "full"
        loop, http = STACKS[stack]
        cmd = [sys.executable, "-m", "ripple", "serve", str(db), "--port", str(port), "--durability", durability,
               "--loop", loop, "--http", http]
        if target.endswith("nometrics"):
            cmd.append("--no-metrics")
    else:
        cmd = [sys.executable, __file__, "--serve", target, str(port), str(db), stack]
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
    # the latency distribution's lines ("     50%    7.21ms"), not a "+/- Stdev" figure that ends in 50%
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50": p50, "p99": p99, "non2xx": float(bad.group(1)) if bad else 0.0, "sockerr": bool(errors)}


def bench(target: str, seconds: int, connections: int, workdir: Path, stack: str) -> dict[str, float]:
    port = free_port()
    proc = start(target, port, workdir, stack)
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
        cpu0 = process_cpu(proc.pid)
        result = run_wrk(port, lua, seconds, connections, workdir)
        result["cpu_us"] = (process_cpu(proc.pid) - cpu0) / max(1.0, result["rps"] * seconds) * 1e6
        return result
    finally:
        stop(proc)


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, every thread) a process has used so far, from /proc (0 where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


TARGETS = ["hello", "naive", "ripple-put", "ripple-put-normal", "ripple-get"]


def metrics_cost(seconds: int, connections: int, rounds: int) -> None:
    """ripple PUT (durability normal: the CPU, not the disk's fsync, is the limit, so a per-request cost shows) with
    and without --no-metrics, alternating, on the fast stack; the best of each and the ratio."""
    rates: dict[str, list[float]] = {"ripple-put-normal-nometrics": [], "ripple-put-normal": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for target, runs in rates.items():
                r = bench(target, seconds, connections, Path(tmp), "fast")
                runs.append(r["rps"])
                print(f"  ran {target}: {r['rps']:.0f} req/s, p99 {r['p99']:.2f} ms", file=sys.stderr, flush=True)
    off, on = max(rates["ripple-put-normal-nometrics"]), max(rates["ripple-put-normal"])
    print(f"wrk -t1 -c{connections} -d{seconds}s, durability normal, best of {rounds} alternating runs, "
          f"{os.cpu_count()} cores")
    print(f"ripple PUT --no-metrics  {off:>8.0f} req/s")
    print(f"ripple PUT (metrics on)  {on:>8.0f} req/s")
    print(f"with / without           {on / off:>8.3f}")


def run_stack(stack: str, rounds: int, seconds: int, connections: int, targets: list[str], summary: str | None
              ) -> None:
    runs: dict[str, list[dict[str, float]]] = {t: [] for t in targets}
    with tempfile.TemporaryDirectory() as tmp:
        for n in range(rounds):
            for target in targets:
                r = bench(target, seconds, connections, Path(tmp), stack)
                runs[target].append(r)
                print(f"  [{stack} round {n + 1}/{rounds}] {target}: {r['rps']:.0f} req/s", file=sys.stderr, flush=True)
    loop, http = STACKS[stack]
    print(f"\nstack {stack} ({loop} + {http}): wrk -t1 -c{connections} -d{seconds}s, {rounds} rounds, uvicorn one "
          f"worker, 127.0.0.1, {os.cpu_count()} cores; medians over rounds\n")
    print("| target | req/s | p50 ms | p99 ms | non-2xx | server CPU µs/request |\n|---|---:|---:|---:|---:|---:|")
    for target, rs in runs.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("rps", "p50", "p99", "non2xx", "cpu_us")}
        print(f"| {target} | {med['rps']:,.0f} | {med['p50']:.2f} | {med['p99']:.2f} | {med['non2xx']:.0f} | "
              f"{med['cpu_us']:.0f} |")

    def ratio(a: str, b: str) -> float:
        return statistics.median(x["rps"] / y["rps"] for x, y in zip(runs[a], runs[b], strict=True))

    def rounds_of(a: str, b: str) -> str:
        return ", ".join(f"{x['rps'] / y['rps']:.2f}" for x, y in zip(runs[a], runs[b], strict=True))

    print()
    for a, b, label, target in (("ripple-put", "hello", "ripple PUT (full) / hello POST", 0.8),
                                ("ripple-put", "naive", "ripple PUT (full) / naive insert", 1.5),
                                ("ripple-put-normal", "hello", "ripple PUT (normal) / hello POST", None),
                                ("ripple-get", "hello", "ripple GET / hello POST", None)):
        if a not in runs or b not in runs:
            continue
        r = ratio(a, b)
        goal = "" if target is None else f"   target >= {target}x"
        cpu = statistics.median(y["cpu_us"] / x["cpu_us"] for x, y in zip(runs[a], runs[b], strict=True)
                                if x["cpu_us"] > 0)
        print(f"{label:<34} = {r:.2f}x (rounds: {rounds_of(a, b)}){goal}; CPU per request ratio {cpu:.2f}x")
        if target is not None:
            rps = statistics.median(x["rps"] for x in runs[a])
            base = statistics.median(x["rps"] for x in runs[b])
            record(summary, f"REST PUT, {connections} keep-alive connections, {loop} + {http}",
                   f"{rps:,.0f} vs {base:,.0f} req/s ({b})", r, f">= {target}x", r >= target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stack", default="fast,pure", help="comma-separated: fast (uvloop+httptools), pure")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated, of: " + ", ".join(TARGETS))
    parser.add_argument("--quick", action="store_true", help="2 s per target, 1 round, fast stack, PUT and peers")
    parser.add_argument("--summary", help=argparse.SUPPRESS)
    parser.add_argument("--metrics", action="store_true", help="only ripple PUT (normal) with and without metrics")
    parser.add_argument("--serve", nargs=4, metavar=("KIND", "PORT", "DB", "STACK"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve_comparison(args.serve[0], int(args.serve[1]), args.serve[2], args.serve[3])
        return
    if shutil.which("wrk") is None:
        sys.exit("this benchmark drives load with wrk: apt-get install wrk")
    if args.metrics:
        metrics_cost(args.seconds, args.connections, args.rounds)
        return
    if args.quick:
        args.seconds, args.rounds, args.stack, args.targets = 2, 1, "fast", "hello,naive,ripple-put"
    for stack in args.stack.split(","):
        run_stack(stack, args.rounds, args.seconds, args.connections, args.targets.split(","), args.summary)


if __name__ == "__main__":
    main()
