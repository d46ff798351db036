"""What the writer counts for operators (``/metrics``, ``/v1/health``): plain numbers, no metrics library.

The writer records per *group commit* (its size and duration) and per *refused* command — never per successful
command, so the hot path pays two histogram observations per COMMIT and nothing per write. Successful writes are
counted by op from the committed events by :class:`WriteCounts`, a commit-bus listener that only the metrics layer
attaches. Everything else operators see (queue depth, subscribers and their lag, file sizes) is sampled when
``/metrics`` is scraped.
"""

from __future__ import annotations

import bisect
import collections
import time
from collections.abc import Sequence

from ripple.core.events import Event

# Seconds: a group commit is one fsync (~0.1-10 ms on a disk) plus the SQL of up to max_batch jobs.
COMMIT_SECONDS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Events per group commit: 1 when writers take turns, up to max_batch (1000) under load.
COMMIT_SIZE_BUCKETS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000)


class Histogram:
    """Cumulative-bucket counts, a sum and a count, in Prometheus' shape. Not thread-safe: one owner (the loop)."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(upper bound, observations <= it), ..., ("+Inf", count)]``."""
        out, total = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), total))
        return out


class WriterStats:
    """Counted by the writer on the event loop: group commits, refused commands, overload episodes."""

    def __init__(self) -> None:
        self.commit_seconds = Histogram(COMMIT_SECONDS_BUCKETS)
        self.commit_events = Histogram(COMMIT_SIZE_BUCKETS)
        #: (op, error code) -> commands the writer refused: precondition_failed, conflict, update_rejected,
        #: overloaded (queue full), storage_error, ...
        self.refused: collections.Counter[tuple[str, str]] = collections.Counter()
        #: monotonic time of the first refusal of the current overload episode; None once the queue drained
        self.overloaded_since: float | None = None
        self.overload_episodes = 0

    def committed(self, events: int, seconds: float) -> None:
        self.commit_events.observe(events)
        self.commit_seconds.observe(seconds)

    def overloaded(self, op: str) -> bool:
        """Count a command refused because the queue is full; ``True`` if this starts an episode."""
        self.refused[(op, "overloaded")] += 1
        if self.overloaded_since is None:
            self.overloaded_since = time.monotonic()
            self.overload_episodes += 1
            return True
        return False

    def drained(self) -> float | None:
        """The queue is empty: an overload episode (if any) is over; returns how long it lasted."""
        since, self.overloaded_since = self.overloaded_since, None
        return None if since is None else time.monotonic() - since


class WriteCounts:
    """A commit-bus listener: committed events by op (``set``, ``update``, ``delete``, ``send``).

    Attached by the metrics layer only (``store.commits.subscribe(counts)``), so an embedded store without metrics
    pays nothing for it.
    """

    def __init__(self) -> None:
        self.by_op: collections.Counter[str] = collections.Counter({"set": 0, "update": 0, "delete": 0, "send": 0})

    def __call__(self, events: list[Event]) -> None:
        by_op = self.by_op
        for event in events:
            by_op[event.op] += 1
