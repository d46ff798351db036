"""Retention: compaction of the log's prefix into a base snapshot, stream trimming, space reclaim. Synchronous SQL.

Shared by the live store (each step runs inside a writer transaction, through the writer queue) and the offline tool
(``ripple compact``, under the writer lock), so both move the floor the same way:

- :func:`compact_step` folds the events of ``[earliest, upto)`` into ``log_base`` (the state as of the floor - 1,
  one row per key alive then), deletes them and moves ``log_floor.earliest`` — all in the caller's transaction, so a
  reader sees either the old floor with its events or the new floor with its base, never a mix. Offsets are never
  renumbered.
- :func:`trim_streams_step` deletes stream events below a second floor (``stream_earliest``): streams can expire
  sooner than state history. State events there stay, so time travel and verify are untouched; only followers that
  read streams must resume at or after that floor.
- :func:`vacuum_step` returns free pages to the file system (incremental auto-vacuum), a bounded number at a time.
- :func:`blockers` names the durable reaction cursors and projection checkpoints a floor would cut off.

A step's cost is bounded by its chunk (``COMPACT_CHUNK`` events, ``VACUUM_CHUNK`` pages); a live store checkpoints the
WAL after each step (from the writer's connection, so the WAL stays small) and then leaves the writer to ordinary
writes for ``PACE`` times as long as the step and its checkpoint took, so compaction uses at most a quarter of the
writer's time and a write waits for at most one step (measured in ``bench/compact.py``).
"""

from __future__ import annotations

import math
import re
import sqlite3
import time
from typing import Literal

import msgspec

from ripple.core.events import KindFilter
from ripple.errors import ValidationError
from ripple.store import sql

# Events folded and deleted per live writer transaction. Measured (bench/compact.py, 2-core machine): ~10 µs per
# event on a warm cache (the base upsert for its key, then the row and its four index entries deleted), so 500 events
# hold the writer for ~5 ms — about one fsync of an ordinary group commit: the most a write waits behind a step
# (under load, with a cold cache, ~20 ms, plus as long again for the checkpoint that follows).
COMPACT_CHUNK = 500
# Offline nobody waits: bigger steps, fewer commits.
OFFLINE_CHUNK = 20_000
# Free pages moved per writer transaction by incremental vacuum: ~100 µs a page, so ~5 ms.
VACUUM_CHUNK = 64
# After each live step the writer is left to ordinary writes for PACE times the step's duration: compaction takes at
# most 1 / (1 + PACE) of the writer's time.
PACE = 3.0


class Floor(msgspec.Struct, frozen=True):
    """The first offset kept, and the first from which stream events are kept too (``stream_earliest >= earliest``)."""

    earliest: int = 1
    stream_earliest: int = 1

    def for_kind(self, kind: KindFilter) -> int:
        """The earliest offset a follower of ``kind`` can resume from without missing an event."""
        return self.earliest if kind == "state" else self.stream_earliest


class Blocker(msgspec.Struct, frozen=True):
    """A durable reader whose input a floor would remove: it has handled the log up to ``position`` only."""

    kind: Literal["reaction", "projection"]
    name: str
    position: int

    def describe(self) -> str:
        what = "durable reaction" if self.kind == "reaction" else "projection"
        return f"{what} {self.name!r} (at offset {self.position})"


class CompactResult(msgspec.Struct, frozen=True):
    """What a compaction did: the floor before and after, events removed, and the time it took."""

    earliest_before: int
    earliest: int
    stream_earliest: int
    removed: int
    seconds: float
    forced: list[Blocker] = []

    @property
    def events_per_second(self) -> float:
        return self.removed / self.seconds if self.seconds > 0 else 0.0


def read_floor(conn: sqlite3.Connection) -> Floor:
    earliest, stream_earliest = sql.floor(conn)
    return Floor(earliest, max(earliest, stream_earliest))


def _save_floor(conn: sqlite3.Connection, floor: Floor) -> None:
    conn.execute(
        "INSERT INTO log_floor (id, earliest, stream_earliest, compacted_ts) VALUES (1, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET earliest = excluded.earliest, stream_earliest = excluded.stream_earliest, "
        "compacted_ts = excluded.compacted_ts",
        (floor.earliest, floor.stream_earliest, int(time.time() * 1000)),
    )


# ---- checks ----------------------------------------------------------------------------------------------------


def check_before(conn: sqlite3.Connection, before: object, option: str = "--before") -> int:
    """A valid new floor: an integer in ``[1, head]`` (the head event always stays, so the head never moves back)."""
    if isinstance(before, bool) or not isinstance(before, int):
        raise ValidationError(f"{option} must be an integer, not {type(before).__name__}")
    head = sql.head(conn)
    if before < 1 or before > head:
        raise ValidationError(
            f"{option} {before} is outside the log: it must be from 1 to the head ({head}); events with offsets "
            f"below it are removed and the head event always stays",
            detail={"before": before, "head": head},
        )
    return before


def blockers(conn: sqlite3.Connection, before: int) -> list[Blocker]:
    """Durable reactions and projections that still need events below ``before`` (they are at an offset < before-1).

    Every row counts, registered now or not: a cursor left by a reaction that is gone still blocks until ``--force``
    (or until its row is deleted), because ripple cannot tell a renamed reaction from one that is just not running.
    """
    found = [Blocker("reaction", name, cursor) for name, cursor in conn.execute(
        "SELECT name, cursor FROM reactions WHERE cursor < ? ORDER BY cursor, name", (before - 1,))]
    found += [Blocker("projection", name, checkpoint) for name, checkpoint in conn.execute(
        "SELECT name, checkpoint FROM projections WHERE checkpoint < ? ORDER BY checkpoint, name", (before - 1,))]
    return found


def refuse_message(before: int, found: list[Blocker]) -> str:
    names = ", ".join(b.describe() for b in found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
    return (f"a floor at offset {before} would remove events that {names} still need{'s' if len(found) == 1 else ''}; "
            "let them catch up, or pass --force (force=True) to compact anyway")


# ---- steps (each in the caller's write transaction) ------------------------------------------------------------

# The last state event of each key in [lo, hi), with the latest create in the range (None: the incarnation began
# before lo, so the base row already holds its create offset).
_LAST_IN_RANGE = """
SELECT e.scope, e.key, e.event_type, e.new_value, e.version, e.seq, e.ts, l.created FROM (
  SELECT max(seq) AS seq, max(CASE WHEN event_type = 'created' THEN seq END) AS created FROM events
   WHERE kind = 'state' AND seq >= ? AND seq < ? GROUP BY scope, key) l
  JOIN events e ON e.seq = l.seq
"""
_UPSERT_BASE = (
    "INSERT INTO log_base (scope, key, value, version, last_seq, created_seq, ts) VALUES (?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value, version = excluded.version, "
    "last_seq = excluded.last_seq, ts = excluded.ts, "
    "created_seq = CASE WHEN excluded.created_seq < 0 THEN log_base.created_seq ELSE excluded.created_seq END"
)
_DELETE_BASE = "DELETE FROM log_base WHERE scope = ? AND key = ?"


def compact_step(conn: sqlite3.Connection, before: int, chunk: int | None = None) -> tuple[Floor, int]:
    """Move the floor towards ``before`` by at most ``chunk`` offsets; returns the new floor and the events removed.

    Idempotent and resumable: it starts from the floor stored in the file, so a step that rolled back is simply
    done again.
    """
    floor = read_floor(conn)
    lo = floor.earliest
    hi = min(before, lo + (COMPACT_CHUNK if chunk is None else chunk))
    if hi <= lo:
        return floor, 0
    upserts, deletes = [], []
    for scope, key, event_type, value, version, seq, ts, created in conn.execute(_LAST_IN_RANGE, (lo, hi)):
        if event_type == "deleted":
            deletes.append((scope, key))
        else:
            upserts.append((scope, key, value, version, seq, -1 if created is None else created, ts))
    conn.executemany(_DELETE_BASE, deletes)
    conn.executemany(_UPSERT_BASE, upserts)
    removed = conn.execute("DELETE FROM events WHERE seq >= ? AND seq < ?", (lo, hi)).rowcount
    new = Floor(hi, max(hi, floor.stream_earliest))
    _save_floor(conn, new)
    return new, int(removed)


def trim_streams_step(conn: sqlite3.Connection, before: int, chunk: int | None = None) -> tuple[Floor, int]:
    """Move the stream floor towards ``before`` by at most ``chunk`` offsets (stream events only; state stays)."""
    floor = read_floor(conn)
    lo = floor.stream_earliest
    hi = min(before, lo + (COMPACT_CHUNK if chunk is None else chunk))
    if hi <= lo:
        return floor, 0
    removed = conn.execute("DELETE FROM events WHERE seq >= ? AND seq < ? AND kind = 'stream'", (lo, hi)).rowcount
    new = Floor(floor.earliest, hi)
    _save_floor(conn, new)
    return new, int(removed)


def vacuum_step(conn: sqlite3.Connection, pages: int = VACUUM_CHUNK) -> int:
    """Give up to ``pages`` free pages back (incremental auto-vacuum); returns the free pages left.

    Python's ``sqlite3`` steps a PRAGMA statement once, and each step of ``incremental_vacuum`` moves one page, so
    the pragma runs once per page. A file created before incremental auto-vacuum keeps its free pages for reuse
    (``auto_vacuum`` is 0 there) until ``ripple compact`` converts it with one full VACUUM.
    """
    if auto_vacuum(conn) != "incremental":
        return 0
    for _ in range(min(pages, free_pages(conn))):
        conn.execute("PRAGMA incremental_vacuum(1)")
    return free_pages(conn)


def free_pages(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA freelist_count").fetchone()[0])


def auto_vacuum(conn: sqlite3.Connection) -> str:
    mode = int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])
    return {0: "none", 1: "full", 2: "incremental"}.get(mode, str(mode))


# ---- policies: where the floor should be ------------------------------------------------------------------------


def first_offset_since(conn: sqlite3.Connection, cutoff_ms: int, lo: int, hi: int) -> int:
    """The first offset in ``[lo, hi]`` committed at or after ``cutoff_ms`` (``hi`` when none is): a binary search
    over the primary key, ``O(log n)`` point reads (commit times follow offsets)."""
    while lo < hi:
        mid = (lo + hi) // 2
        row = conn.execute("SELECT seq, ts FROM events WHERE seq >= ? ORDER BY seq LIMIT 1", (mid,)).fetchone()
        if row is None or row[1] >= cutoff_ms:
            hi = mid
        else:
            lo = row[0] + 1
    return lo


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the file in use (pages minus free pages): what a size budget is compared with."""
    page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    return (pages - free_pages(conn)) * page_size


def floor_for_size(conn: sqlite3.Connection, max_bytes: int) -> int | None:
    """A floor that brings the file's used bytes to about ``max_bytes``, at the file's average bytes per event
    (``None``: already within the budget). Re-evaluated on every retention run, so it converges."""
    used = used_bytes(conn)
    if used <= max_bytes:
        return None
    floor = read_floor(conn)
    head = sql.head(conn)
    kept = max(1, head - floor.earliest + 1)
    per_event = used / kept
    remove = math.ceil((used - max_bytes) / per_event)
    return min(head, floor.earliest + remove)


class RetentionPolicy(msgspec.Struct, frozen=True):
    """How much history a live store keeps (``ripple serve --retain-*``); ``None`` = no limit of that kind.

    - ``max_age_ms``: compact events older than this;
    - ``max_bytes``: compact the oldest events while the file uses more than this (the current state is never
      removed, so a file whose state alone is larger keeps only its newest events);
    - ``stream_max_age_ms``: remove stream events older than this (state history is kept);
    - ``interval``: seconds between two runs.
    """

    max_age_ms: int | None = None
    max_bytes: int | None = None
    stream_max_age_ms: int | None = None
    interval: float = 60.0

    @property
    def enabled(self) -> bool:
        return any(x is not None for x in (self.max_age_ms, self.max_bytes, self.stream_max_age_ms))


class Targets(msgspec.Struct, frozen=True):
    """Where a policy wants the floors now (``None``: leave it)."""

    before: int | None
    streams_before: int | None


def targets(conn: sqlite3.Connection, policy: RetentionPolicy, now_ms: int | None = None) -> Targets:
    """The floors ``policy`` asks for now, read in one read transaction."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    conn.execute("BEGIN")
    try:
        floor = read_floor(conn)
        head = sql.head(conn)
        before: int | None = None
        if policy.max_age_ms is not None and head:
            before = first_offset_since(conn, now - policy.max_age_ms, floor.earliest, head)
        if policy.max_bytes is not None and head:
            by_size = floor_for_size(conn, policy.max_bytes)
            if by_size is not None:
                before = max(before or 0, by_size)
        streams: int | None = None
        if policy.stream_max_age_ms is not None and head:
            streams = first_offset_since(conn, now - policy.stream_max_age_ms, floor.stream_earliest, head)
    finally:
        conn.execute("COMMIT")
    return Targets(
        before if before is not None and before > floor.earliest else None,
        streams if streams is not None and streams > max(floor.stream_earliest, before or 0) else None,
    )


# ---- parsing the command line's sizes and ages -------------------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)\s*$", re.IGNORECASE)
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
               "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4, "tb": 1000**4, "tib": 1024**4}
_AGE_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_size(text: str) -> int:
    """``"500MB"``, ``"2GiB"``, ``"1e6"``-free plain bytes → bytes."""
    match = _SIZE.match(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ValidationError(f"not a size: {text!r} (examples: 500MB, 2GiB, 1000000)")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def format_age(ms: int) -> str:
    """Milliseconds as the largest unit of :func:`parse_age` that divides them (``"30d"``, ``"12h"``, ``"5s"``)."""
    for unit, size in sorted(_AGE_UNITS.items(), key=lambda item: -item[1]):
        if ms % size == 0 and ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def parse_age(text: str) -> int:
    """``"30d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` → milliseconds."""
    match = _AGE.match(text)
    if match is None:
        raise ValidationError(f"not an age: {text!r} (examples: 30d, 12h, 90m, 45s, 2w)")
    return int(float(match.group(1)) * _AGE_UNITS[match.group(2).lower()])
