"""``GET /metrics``: Prometheus' text format, sampled when scraped.

Nothing here runs per write. Counters that already exist are read as they are (``store.counters``, the writer's
:class:`~ripple.store.stats.WriterStats`, the iii engine's counters, :class:`~ripple.http.requests.HttpStats`);
successful writes are counted by op from each commit by one commit-bus listener
(:class:`~ripple.store.stats.WriteCounts`); gauges (queue depth, subscribers and their lag, reactions, projections,
file sizes) are read at scrape time. Every metric is listed with its meaning in docs/operations.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from litestar import MediaType, Request, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ASGIApp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from ripple import __version__
from ripple.auth.context import require_admin
from ripple.http.requests import HttpStats
from ripple.migrations import LATEST_VERSION
from ripple.projections.runner import ProjectionList
from ripple.store.stats import Histogram, WriteCounts
from ripple.subscriptions.cursor import Cursor

if TYPE_CHECKING:
    from ripple.iii.engine import Engine
    from ripple.store.store import Store

PROJECTION_STATUSES = ("ok", "catching_up", "rebuilding", "failed")
# A follower's kind, from the store counter its overflows add to (Follower(overflow_counter=...)).
FOLLOWER_KINDS = {
    "subscriber_overflows": "subscriber",
    "reaction_overflows": "reaction",
    "projection_overflows": "projection",
    "iii_trigger_overflows": "iii_trigger",
    "iii_stream_overflows": "iii_stream",
}
# store.counters that have a metric of their own (the rest are exported as ripple_<name>_total)
_OWN_METRIC = {"refused_cascades", "reaction_failures", *FOLLOWER_KINDS}


def histogram(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, buckets=h.cumulative(), sum_value=h.sum)


class RippleCollector(Collector):
    """Everything ripple exports, read from the live objects; :meth:`sample` first reads what needs I/O."""

    def __init__(self, store: Store, http: HttpStats, writes: WriteCounts, engine: Engine | None = None) -> None:
        self.store = store
        self.http = http
        self.writes = writes
        self.engine = engine
        self._projections: ProjectionList | None = None

    async def sample(self) -> None:
        """Read the projections table (one read transaction) before :meth:`collect` runs."""
        self._projections = None if self.store.closed else await self.store.projections.summaries()

    def collect(self) -> Iterator[Metric]:
        yield from self._store()
        yield from self._writes()
        yield from self._followers()
        yield from self._reactions()
        yield from self._projections_metrics()
        yield from self._http()
        if not self.store.shared_log:  # a SQLite file's sizes; PostgreSQL reports its own (pg_database_size)
            yield from self._files()
        if self.engine is not None:
            yield from self._iii(self.engine)

    # -- the store and the writer

    def _store(self) -> Iterator[Metric]:
        store = self.store
        info = InfoMetricFamily("ripple_build", "ripple's version, schema version and durability")
        info.add_metric([], {"version": __version__, "schema_version": str(LATEST_VERSION),
                             "durability": store.durability})
        yield info
        yield GaugeMetricFamily("ripple_head_offset", "The last committed offset of the log", value=store.head)
        yield GaugeMetricFamily("ripple_writer_queue_depth", "Commands waiting for the writer",
                                value=store.queue_depth)
        yield GaugeMetricFamily("ripple_writer_queue_limit", "Commands the queue holds before writes get 503",
                                value=store.max_queue)
        stats = store.writer_stats
        yield GaugeMetricFamily("ripple_writer_overloaded", "1 while writes are refused because the queue is full",
                                value=int(stats.overloaded_since is not None))
        yield CounterMetricFamily("ripple_writer_overload_episodes", "Times the queue filled up and writes were "
                                  "refused (each episode ends when the queue drains)", value=stats.overload_episodes)
        yield GaugeMetricFamily("ripple_writer_degraded", "1 while writes are refused after an I/O error",
                                value=int(store.degraded))
        yield histogram("ripple_group_commit_events", "Events per group commit (one transaction, one fsync)",
                        stats.commit_events)
        yield histogram("ripple_group_commit_seconds", "Duration of a group commit: BEGIN to COMMIT, fsync included",
                        stats.commit_seconds)
        yield CounterMetricFamily("ripple_refused_cascades", "Writes refused beyond the reaction cascade limit",
                                  value=store.counters.get("refused_cascades", 0))
        for name, value in sorted(store.counters.items()):
            if name not in _OWN_METRIC:
                yield CounterMetricFamily(f"ripple_{name}", f"store counter {name}", value=value)

    def _writes(self) -> Iterator[Metric]:
        family = CounterMetricFamily("ripple_writes", "Write commands by op and outcome: ok (one per event "
                                     "appended), or the error code the writer refused it with",
                                     labels=["op", "outcome"])
        for op, n in sorted(self.writes.by_op.items()):
            family.add_metric([op, "ok"], n)
        for (op, code), n in sorted(self.store.writer_stats.refused.items()):
            family.add_metric([op, code], n)
        yield family

    # -- everything that follows the log

    def _follower_kinds(self) -> dict[Cursor, str]:
        hub = self.store.hub
        kinds = {c: FOLLOWER_KINDS.get(c.overflow_counter, "subscriber") for c in hub.cursors()}
        for session in hub.sessions:
            cursor = getattr(session, "cursor", None)
            if cursor is not None:
                kinds[cursor] = "websocket"
        return kinds

    def _followers(self) -> Iterator[Metric]:
        store = self.store
        head = store.head
        count: dict[str, int] = dict.fromkeys(("websocket", *FOLLOWER_KINDS.values()), 0)
        lag_max, lag_sum = dict(count), dict(count)
        for cursor, kind in self._follower_kinds().items():
            lag = max(0, head - cursor.current_through(head))
            count[kind] += 1
            lag_sum[kind] += lag
            lag_max[kind] = max(lag_max[kind], lag)
        yield labelled(GaugeMetricFamily, "ripple_followers", "Readers following the log, by kind (websocket and "
                       "embedded subscribers, reactions, async projections, iii triggers and streams)", "kind", count)
        yield labelled(GaugeMetricFamily, "ripple_follower_lag_events_max", "The largest lag (head - through) "
                       "among the followers of each kind", "kind", lag_max)
        yield labelled(GaugeMetricFamily, "ripple_follower_lag_events_sum", "The lags (head - through) of the "
                       "followers of each kind, added up", "kind", lag_sum)
        overflows = {kind: store.counters.get(counter, 0) for counter, kind in FOLLOWER_KINDS.items()}
        yield labelled(CounterMetricFamily, "ripple_follower_overflows", "Times a follower's live buffer "
                       "overflowed and it fell back to reading the log (websocket subscribers count as subscriber)",
                       "kind", overflows)
        endpoints: dict[str, int] = {"subscribe": 0, "streams": 0}
        for session in store.hub.sessions:
            path = getattr(getattr(session, "socket", None), "scope", {}).get("path", "")
            endpoints["streams" if path.startswith("/v1/streams/") else "subscribe"] += 1
        yield labelled(GaugeMetricFamily, "ripple_websocket_connections", "Open WebSocket subscriptions by "
                       "endpoint (/v1/subscribe, /v1/streams/...)", "endpoint", endpoints)

    def _reactions(self) -> Iterator[Metric]:
        head = self.store.head
        lag = GaugeMetricFamily("ripple_reaction_lag_events", "Events committed that a reaction has not handled "
                                "yet (head - through)", labels=["reaction"])
        handled = CounterMetricFamily("ripple_reaction_handled", "Events a reaction handled", labels=["reaction"])
        failures = CounterMetricFamily("ripple_reaction_failures", "Times a reaction's handler or condition "
                                       "raised, or its staged writes were rejected", labels=["reaction"])
        for reaction in self.store.reactions:
            follower = reaction.follower
            through = reaction.through if follower is None or reaction.busy else follower.cursor.current_through(head)
            lag.add_metric([reaction.label], max(0, head - through))
            handled.add_metric([reaction.label], reaction.handled)
            failures.add_metric([reaction.label], reaction.failures)
        yield lag
        yield handled
        yield failures

    def _projections_metrics(self) -> Iterator[Metric]:
        listing = self._projections
        if listing is None:
            return
        lag = GaugeMetricFamily("ripple_projection_lag_events", "Events a projection has not folded yet "
                                "(head - checkpoint)", labels=["projection"])
        checkpoint = GaugeMetricFamily("ripple_projection_checkpoint", "The last offset a projection folded",
                                       labels=["projection"])
        status = GaugeMetricFamily("ripple_projection_status", "1 for the projection's current status",
                                   labels=["projection", "status"])
        for p in listing.projections:
            lag.add_metric([p.name], p.lag)
            checkpoint.add_metric([p.name], p.checkpoint)
            for s in PROJECTION_STATUSES:
                status.add_metric([p.name, s], int(p.status == s))
        yield lag
        yield checkpoint
        yield status

    # -- HTTP, files, iii

    def _http(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("ripple_http_requests", "HTTP requests by method, route and status",
                                       labels=["method", "route", "status"])
        for (method, route, status), n in sorted(self.http.requests.items()):
            requests.add_metric([method, route, str(status)], n)
        yield requests
        yield histogram("ripple_http_request_duration_seconds", "Time from a request's arrival to its last byte "
                        "sent", self.http.seconds)
        yield labelled(CounterMetricFamily, "ripple_websocket_sessions", "WebSocket connections that ended, by "
                       "route", "route", dict(self.http.websockets))

    def _files(self) -> Iterator[Metric]:
        path = self.store.path
        yield GaugeMetricFamily("ripple_db_file_bytes", "Size of the SQLite database file", value=file_size(path))
        yield GaugeMetricFamily("ripple_db_wal_bytes", "Size of its write-ahead log (-wal file)",
                                value=file_size(path + "-wal"))

    def _iii(self, engine: Engine) -> Iterator[Metric]:
        yield GaugeMetricFamily("ripple_iii_workers", "iii workers connected", value=len(engine.workers))
        bad: dict[str, int] = {}
        for name, n in sorted(engine.counters.items()):
            if name.startswith("bad_frames."):
                bad[name.removeprefix("bad_frames.")] = n
            else:
                yield CounterMetricFamily(f"ripple_iii_{name}", f"iii engine counter {name}", value=n)
        yield labelled(CounterMetricFamily, "ripple_iii_bad_frames", "Frames from workers that could not be used, "
                       "by kind", "kind", bad)


def labelled(cls: Any, name: str, doc: str, label: str, values: dict[str, int]) -> Metric:
    family = cls(name, doc, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    metric: Metric = family
    return metric


def file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


class Metrics:
    """One app's metrics over one open store: the registry (ripple's collector and the process collector).

    ``with metrics.counting(): ...`` counts committed writes while the app runs."""

    def __init__(self, store: Store, http: HttpStats, engine: Engine | None = None) -> None:
        self.store = store
        self.http = http
        self.writes = WriteCounts()
        self.collector = RippleCollector(store, http, self.writes, engine)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        ProcessCollector(registry=self.registry)

    @contextmanager
    def counting(self) -> Iterator[None]:
        unsubscribe = self.store.commits.subscribe(self.writes)
        try:
            yield
        finally:
            unsubscribe()

    async def render(self) -> bytes:
        await self.collector.sample()
        body: bytes = generate_latest(self.registry)
        return body


class TextAnswer:
    """The exposition as a bare ASGI answer: Litestar would append a second ``charset`` to the content type."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", CONTENT_TYPE.encode()), (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


@get("/metrics", tags=["server"], summary="Metrics (Prometheus text format)",
     responses={200: ResponseSpec(str, description="Prometheus text exposition format 0.0.4",
                                  media_type=MediaType.TEXT)})
async def get_metrics(request: Request[Any, Any, Any]) -> ASGIApp:
    """Every ripple metric in Prometheus' text exposition format (docs/operations.md lists them). Under ``--auth``:
    an admin token."""
    require_admin("read the metrics")
    metrics: Metrics = request.app.state.metrics
    return TextAnswer(await metrics.render())
