"""The Grafana dashboard for ripple's metrics, and a picture of its panels fed by a scripted load.

    python bench/dashboard.py --json      # write docs/grafana/ripple-dashboard.json from PANELS below
    python bench/dashboard.py             # run the load, scrape /metrics every second, draw docs/grafana/dashboard.png

The panels are defined once, here: the JSON is Grafana's dashboard model (import it, pick a Prometheus data source);
the picture evaluates the same queries on the samples scraped during the load with a small evaluator of the PromQL
forms the panels use (a selector, ``rate``, ``sum by``, ``histogram_quantile``) and draws them with matplotlib
(``pip install matplotlib``). Grafana itself is not installable on the machine that made the picture (no Debian, PyPI
or npm package of the server), which is why it is drawn this way; the numbers are real scrapes of a real server.

The load (about 90 s, 127.0.0.1 only): a ``ripple serve --iii`` child with a small write queue and small subscriber
buffers, writers at a changing rate (a steady start, a ramp, a burst that overloads the queue, batches, a calm end),
a WebSocket subscriber that reads everything, one that stops reading (it overflows and falls back to the log, and
is closed once it misses the keepalive pings), a reaction that fails on some events, a slow reaction and a slow async
projection that lag under load, a slow transaction hook that makes the burst overload the write queue, and an iii
worker that sends a bad frame every 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OUT_JSON = ROOT / "docs" / "grafana" / "ripple-dashboard.json"
OUT_PNG = ROOT / "docs" / "grafana" / "dashboard.png"
RATE = "$__rate_interval"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str  # Grafana unit id: short, ops, s, bytes, reqps
    queries: tuple[Query, ...]
    description: str = ""


def q(expr: str, legend: str = "") -> Query:
    return Query(expr, legend)


def quantiles(metric: str, *qs: float) -> tuple[Query, ...]:
    return tuple(q(f"histogram_quantile({x}, sum by (le) (rate({metric}_bucket[{RATE}])))", f"p{round(x * 100)}")
                 for x in qs)


PANELS: tuple[Panel, ...] = (
    Panel("Writes/s by op and outcome", "ops",
          (q(f"sum by (op, outcome) (rate(ripple_writes_total[{RATE}]))", "{{op}} {{outcome}}"),),
          "ok: events appended; otherwise the error code the writer refused the command with"),
    Panel("Log head (offset)", "short", (q("ripple_head_offset", "head"),)),
    Panel("Group commit duration", "s", quantiles("ripple_group_commit_seconds", 0.5, 0.99),
          "BEGIN to COMMIT with the fsync: the latency every write of the group waited for"),
    Panel("Events per group commit", "short", quantiles("ripple_group_commit_events", 0.5, 0.99)),
    Panel("Writer queue", "short", (q("ripple_writer_queue_depth", "queued"),
                                    q("ripple_writer_overloaded", "overloaded (1 = refusing writes)"))),
    Panel("HTTP requests/s by status", "reqps",
          (q(f"sum by (status) (rate(ripple_http_requests_total[{RATE}]))", "{{status}}"),)),
    Panel("HTTP request duration", "s", quantiles("ripple_http_request_duration_seconds", 0.5, 0.99)),
    Panel("Followers by kind", "short", (q("ripple_followers", "{{kind}}"),)),
    Panel("Slowest follower lag (events)", "short", (q("ripple_follower_lag_events_max", "{{kind}}"),)),
    Panel("Follower overflows/s", "ops",
          (q(f"sum by (kind) (rate(ripple_follower_overflows_total[{RATE}]))", "{{kind}}"),),
          "a live buffer overflowed: that follower reads the log instead (latency, never loss)"),
    Panel("Reaction lag (events)", "short", (q("ripple_reaction_lag_events", "{{reaction}}"),)),
    Panel("Reaction failures/s", "ops",
          (q(f"sum by (reaction) (rate(ripple_reaction_failures_total[{RATE}]))", "{{reaction}}"),)),
    Panel("Projection lag (events)", "short", (q("ripple_projection_lag_events", "{{projection}}"),)),
    Panel("WebSocket connections", "short", (q("ripple_websocket_connections", "{{endpoint}}"),
                                             q("ripple_iii_workers", "iii workers"))),
    Panel("Database and WAL size", "bytes", (q("ripple_db_file_bytes", "database"), q("ripple_db_wal_bytes", "WAL"))),
    Panel("iii bad frames/s, refused cascades/s", "ops",
          (q(f"sum by (kind) (rate(ripple_iii_bad_frames_total[{RATE}]))", "iii {{kind}}"),
           q(f"rate(ripple_refused_cascades_total[{RATE}])", "refused cascades"))),
)

COLUMNS = 3


# ---- the Grafana dashboard model ---------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    panels = []
    for i, panel in enumerate(PANELS):
        panels.append({
            "id": i + 1,
            "type": "timeseries",
            "title": panel.title,
            "description": panel.description,
            "datasource": {"type": "prometheus", "uid": "${datasource}"},
            "gridPos": {"h": 8, "w": 24 // COLUMNS, "x": (i % COLUMNS) * (24 // COLUMNS), "y": (i // COLUMNS) * 8},
            "fieldConfig": {"defaults": {"unit": panel.unit, "custom": {"lineWidth": 1, "fillOpacity": 10}},
                            "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                        "tooltip": {"mode": "multi", "sort": "none"}},
            "targets": [{"refId": chr(ord("A") + j), "expr": query.expr, "legendFormat": query.legend or "__auto",
                         "datasource": {"type": "prometheus", "uid": "${datasource}"}}
                        for j, query in enumerate(panel.queries)],
        })
    return {
        "__inputs": [],
        "title": "ripple",
        "uid": "ripple-overview",
        "description": "ripple serve: writes, the writer, followers, reactions, projections, HTTP, WebSocket, "
                       "storage, iii (docs/operations.md lists every metric).",
        "tags": ["ripple"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "10s",
        "time": {"from": "now-30m", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1},
            {"name": "instance", "label": "instance", "type": "query",
             "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(ripple_build_info, instance)", "refId": "instance"},
             "definition": "label_values(ripple_build_info, instance)", "includeAll": True, "multi": True,
             "current": {}, "hide": 0, "refresh": 2},
        ]},
        "panels": panels,
    }


def dashboard_text() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


# ---- a small evaluator of the panels' PromQL -------------------------------------------------------------------

Labels = frozenset[tuple[str, str]]
Series = dict[Labels, list[tuple[float, float]]]
Samples = dict[tuple[str, Labels], float]


@dataclass
class Scrapes:
    times: list[float] = field(default_factory=list)
    samples: list[Samples] = field(default_factory=list)

    def add(self, t: float, text: str) -> None:
        from prometheus_client.parser import text_string_to_metric_families

        found: Samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                found[(s.name, frozenset(s.labels.items()))] = s.value
        self.times.append(t)
        self.samples.append(found)


_QUANTILE = re.compile(r"histogram_quantile\(([\d.]+),\s*(.*)\)")
_SUM = re.compile(r"sum(?:\s+by\s+\(([\w,\s]*)\))?\s*\((.*)\)")
_RATE = re.compile(r"rate\((.*)\[\$__rate_interval\]\)")
_SELECTOR = re.compile(r"(\w+)(?:\{(.*)\})?")


def evaluate(expr: str, scrapes: Scrapes, window: float) -> Series:
    expr = expr.strip()
    if m := _QUANTILE.fullmatch(expr):
        return _quantile(float(m.group(1)), evaluate(m.group(2), scrapes, window))
    if m := _SUM.fullmatch(expr):
        by = [x.strip() for x in (m.group(1) or "").split(",") if x.strip()]
        return _sum(by, evaluate(m.group(2), scrapes, window))
    if m := _RATE.fullmatch(expr):
        return _rate(evaluate(m.group(1), scrapes, window), window)
    if m := _SELECTOR.fullmatch(expr):
        wanted = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        out: Series = {}
        for t, samples in zip(scrapes.times, scrapes.samples, strict=True):
            for (name, labels), value in samples.items():
                if name == m.group(1) and all(dict(labels).get(k) == v for k, v in wanted.items()):
                    out.setdefault(labels, []).append((t, value))
        return out
    raise ValueError(f"the evaluator does not know {expr!r}")


def _rate(series: Series, window: float) -> Series:
    out: Series = {}
    for labels, points in series.items():
        rated = []
        for i, (t, v) in enumerate(points):
            j = i
            while j > 0 and t - points[j - 1][0] <= window:
                j -= 1
            if j < i:
                t0, v0 = points[j]
                rated.append((t, max(0.0, v - v0) / (t - t0)))
        out[labels] = rated
    return out


def _sum(by: list[str], series: Series) -> Series:
    groups: dict[Labels, dict[float, float]] = {}
    for labels, points in series.items():
        key = frozenset((k, v) for k, v in labels if k in by)
        acc = groups.setdefault(key, {})
        for t, v in points:
            acc[t] = acc.get(t, 0.0) + v
    return {k: sorted(acc.items()) for k, acc in groups.items()}


def _quantile(phi: float, buckets: Series) -> Series:
    """Prometheus' histogram_quantile: linear interpolation inside the bucket that holds the rank."""
    by_time: dict[float, list[tuple[float, float]]] = {}
    for labels, points in buckets.items():
        le = dict(labels)["le"]
        bound = math.inf if le == "+Inf" else float(le)
        for t, v in points:
            by_time.setdefault(t, []).append((bound, v))
    out = []
    for t, pairs in sorted(by_time.items()):
        pairs.sort()
        total = pairs[-1][1]
        if total <= 0:
            continue
        rank = phi * total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in pairs:
            if count >= rank:
                if math.isinf(bound):
                    value = lower_bound
                else:
                    share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
                    value = lower_bound + (bound - lower_bound) * share
                out.append((t, value))
                break
            lower_bound, lower_count = bound, count
    return {frozenset(): out}


def legend(template: str, labels: Labels, fallback: str) -> str:
    if not template:
        return fallback
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: dict(labels).get(m.group(1), ""), template)


# ---- the load ------------------------------------------------------------------------------------------------------

APP = '''
import asyncio
import time

from ripple import Projection


def count_order(event, tables):
    time.sleep(0.0005)  # a slow fold: the async projection lags under load and catches up after
    return [(f"INSERT INTO {tables['orders']} (n) VALUES (1) ON CONFLICT(id) DO UPDATE SET n = n + 1", ())]


def setup(store):
    @store.on_change("orders")
    async def bill(event):
        if (event.new_value or {}).get("n", 1) % 40 == 0:
            raise RuntimeError("the card was declined")

    @store.on_change("orders")
    async def ship(event):
        await asyncio.sleep(0.004)  # a slow reaction: it falls behind under load and catches up after

    def audit(txn, events):  # inside the writer's transaction: a slow audit trail slows every group commit
        slow = sum(1 for e in events if e.scope == "audit")
        if slow:
            time.sleep(0.02 * slow)

    store.commits.add_txn_hook(audit)
    store.register_projection(Projection(
        name="order_count", version=1, mode="async", scopes=["orders"], fold=count_order,
        schema=["CREATE TABLE {orders} (id INTEGER PRIMARY KEY DEFAULT 1, n INTEGER NOT NULL)"],
    ))
'''


async def start_server(folder: Path) -> tuple[asyncio.subprocess.Process, str, int]:
    (folder / "loadapp.py").write_text(APP)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ripple", "serve", str(folder / "load.db"), "--port", "0", "--iii",
        "--iii-worker-port", "0", "--iii-http-port", "0", "--iii-stream-port", "0", "--max-queue", "40",
        "--subscriber-buffer-events", "100", "--ws-ping-interval", "30", "--ws-ping-timeout", "30",
        "--app", str(folder / "loadapp.py") + ":setup", "--log-format", "json",
        cwd=folder, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    url, worker_port = "", 0
    while not (url and worker_port):
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        if m := re.search(r"on (http://127\.0\.0\.1:\d+)", line):
            url = m.group(1)
        if m := re.search(r"workers ws://127\.0\.0\.1:(\d+)", line):
            worker_port = int(m.group(1))
        if not line:
            raise RuntimeError("ripple serve exited")
    return proc, url, worker_port


# (start s, end s, writes per second or None for as fast as `writers` allow, concurrent writers)
PHASES = ((0, 15, 150, 4), (15, 35, None, 32), (35, 45, None, 400), (45, 60, 300, 8), (60, 85, 100, 4))
VALUE = "x" * 4000


async def writer_load(url: str, started: float) -> None:
    import httpx

    limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:
        n = 0
        overload = False

        async def one(i: int) -> None:
            with contextlib.suppress(httpx.HTTPError):
                if i % 50 == 0:
                    commands = [{"op": "set", "scope": "orders", "key": f"b{i}-{j}", "value": {"n": i + j}}
                                for j in range(20)]
                    await client.post("/v1/batch", json={"commands": commands})
                else:
                    scope = "audit" if overload else "orders"  # during the burst: writes that slow the writer
                    await client.put(f"/v1/state/{scope}/o{i % 5000}", json={"n": i, "note": VALUE})

        for start, end, rate, writers in PHASES:
            overload = writers >= 100
            while (now := time.monotonic() - started) < end:
                if now < start:
                    await asyncio.sleep(start - now)  # sleep-ok: pacing a load generator
                    continue
                batch = [one(n + k) for k in range(writers)]
                n += writers
                await asyncio.gather(*batch)
                if rate is not None:
                    await asyncio.sleep(writers / rate)  # sleep-ok: pacing a load generator


async def subscribers(url: str, started: float, stop: asyncio.Event) -> None:
    import websockets

    ws_url = url.replace("http://", "ws://")
    reader = await websockets.connect(f"{ws_url}/v1/subscribe?scope=orders&batch=100")
    await asyncio.sleep(2)  # sleep-ok: the stalled subscriber joins a little later
    stalled = await websockets.connect(f"{ws_url}/v1/subscribe?scope=orders", max_queue=1)  # never read

    async def read_all() -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for _ in reader:
                pass

    task = asyncio.ensure_future(read_all())
    await stop.wait()
    await stalled.close()
    await reader.close()
    await task


async def iii_worker(port: int, stop: asyncio.Event) -> None:
    import websockets

    async with websockets.connect(f"ws://127.0.0.1:{port}") as worker:
        await worker.recv()
        while not stop.is_set():
            await worker.send("{not json")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 10)


async def scraper(url: str, started: float, scrapes: Scrapes, stop: asyncio.Event) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        while not stop.is_set():
            tick = time.monotonic()
            response = await client.get("/metrics")
            scrapes.add(tick - started, response.text)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, 1.0 - (time.monotonic() - tick)))


async def run_load() -> Scrapes:
    scrapes = Scrapes()
    with tempfile.TemporaryDirectory() as tmp:
        proc, url, worker_port = await start_server(Path(tmp))
        stop = asyncio.Event()
        started = time.monotonic()
        try:
            side: list[Awaitable[Any]] = [subscribers(url, started, stop), iii_worker(worker_port, stop),
                                          scraper(url, started, scrapes, stop)]
            tasks = [asyncio.ensure_future(t) for t in side]
            await writer_load(url, started)
            await asyncio.sleep(5)  # sleep-ok: a few calm scrapes at the end
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)
    return scrapes


# ---- drawing -------------------------------------------------------------------------------------------------------

_SCALE: dict[str, tuple[float, str]] = {"s": (1000.0, "ms"), "bytes": (1 / 1048576, "MiB")}
_UNIT_NAME = {"ops": "/s", "reqps": "req/s", "short": ""}


def draw(scrapes: Scrapes, path: Path, window: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.style.use("dark_background")
    rows = math.ceil(len(PANELS) / COLUMNS)
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(6.2 * COLUMNS, 3.0 * rows), squeeze=False)
    fig.patch.set_facecolor("#111217")
    for ax, panel in zip(axes.flat, PANELS, strict=False):
        factor, unit = _SCALE.get(panel.unit, (1.0, _UNIT_NAME.get(panel.unit, panel.unit)))
        ax.set_facecolor("#181b1f")
        for query in panel.queries:
            for labels, points in sorted(evaluate(query.expr, scrapes, window).items(), key=lambda kv: sorted(kv[0])):
                if points:
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, [y * factor for y in ys], linewidth=1.2,
                            label=legend(query.legend, labels, query.expr[:40]))
        ax.set_title(panel.title + (f"  ({unit})" if unit else ""), fontsize=10, loc="left", color="#d8d9da")
        ax.tick_params(labelsize=7, colors="#9fa7b3")
        ax.grid(color="#2c3235", linewidth=0.6)
        for spine in ax.spines.values():
            spine.set_color("#2c3235")
        if ax.lines:
            ax.legend(fontsize=7, loc="upper left", frameon=False, ncol=2)
    for ax in list(axes.flat)[len(PANELS):]:
        ax.set_visible(False)
    fig.suptitle("ripple — the dashboard's panels during a scripted load (x: seconds; rates over "
                 f"{window:g} s windows)", color="#d8d9da", fontsize=12, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, facecolor=fig.get_facecolor())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="only write the dashboard JSON")
    parser.add_argument("--window", type=float, default=5.0, help="rate window of the picture, seconds")
    parser.add_argument("--out", type=Path, default=OUT_PNG)
    args = parser.parse_args()
    OUT_JSON.parent.mkdir(parents=True, exist_ok=True)
    OUT_JSON.write_text(dashboard_text())
    if args.json:
        return
    scrapes = asyncio.run(run_load())
    print(f"{len(scrapes.times)} scrapes over {scrapes.times[-1]:.0f} s", file=sys.stderr)
    draw(scrapes, args.out, args.window)
    print(f"wrote {args.out} and {OUT_JSON}", file=sys.stderr)


if __name__ == "__main__":
    main()
