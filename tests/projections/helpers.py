"""Projections used by the tests, and expected values computed from the log in plain Python."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from ripple import Event, Projection, Store
from ripple.projections.base import Mode, Statement, Tables

KEYS_SCHEMA = """
CREATE TABLE {keys} (scope TEXT NOT NULL, key TEXT NOT NULL, changes INTEGER NOT NULL, last TEXT,
                     PRIMARY KEY (scope, key));
CREATE INDEX {keys}_by_changes ON {keys} (changes);
"""


def fold_keys(event: Event, tables: Tables) -> list[Statement]:
    """Per key: how many events, and the last value (as text) — order-sensitive on purpose."""
    last = None if event.new_value is None else repr(event.new_value)
    return [
        (
            f"INSERT INTO {tables['keys']} (scope, key, changes, last) VALUES (?, ?, 1, ?) "
            "ON CONFLICT (scope, key) DO UPDATE SET changes = changes + 1, last = excluded.last",
            (event.scope, event.key, last),
        )
    ]


def keys_projection(*, mode: Mode = "inline", version: int = 1, **kwargs: Any) -> Projection:
    kwargs.setdefault("fold", fold_keys)
    return Projection(name="keys", version=version, schema=KEYS_SCHEMA, mode=mode, **kwargs)


def expected_keys(events: list[Event]) -> dict[tuple[str, str], tuple[int, str | None]]:
    out: dict[tuple[str, str], tuple[int, str | None]] = {}
    for e in events:
        if e.kind != "state":
            continue
        n = out.get((e.scope, e.key), (0, None))[0]
        out[(e.scope, e.key)] = (n + 1, None if e.new_value is None else repr(e.new_value))
    return out


def keys_data(data: Any) -> dict[tuple[str, str], tuple[int, str | None]]:
    return {(r["scope"], r["key"]): (r["changes"], r["last"]) for r in data["keys"]}


def expected_metrics(events: list[Event]) -> dict[str, Any]:
    scopes: dict[str, dict[str, int]] = {}
    for e in events:
        if e.kind != "state":
            continue
        m = scopes.setdefault(e.scope, {"keys": 0, "creates": 0, "updates": 0, "deletes": 0})
        if e.event_type == "created":
            m["keys"] += 1
            m["creates"] += 1
        elif e.event_type == "updated":
            m["updates"] += 1
        else:
            m["keys"] -= 1
            m["deletes"] += 1
    return {"scopes": scopes}


async def all_events(store: Store) -> list[Event]:
    out: list[Event] = []
    while True:
        page = await store.read_events(after=out[-1].offset if out else 0, limit=10_000)
        if not page:
            return out
        out.extend(page)


class Gate:
    """Blocks a fold (in whatever thread runs it) until opened: makes "while rebuilding" observable."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.reached = threading.Event()

    def wait(self) -> None:
        self.reached.set()
        assert self.opened.wait(30), "the gate was never opened"


def read_rows(conn: sqlite3.Connection, tables: Tables) -> list[tuple[Any, ...]]:
    return conn.execute(f"SELECT * FROM {tables['keys']} ORDER BY scope, key").fetchall()
