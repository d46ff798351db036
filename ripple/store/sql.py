"""The SQL that reads and writes ripple's tables, shared by the live store and the offline tool (one home each).

Statements are plain text with ``?`` parameters, so the same strings run on ``sqlite3`` (writer thread, offline tool)
and on ``aiosqlite`` (the reader pool). Column names avoid reserved words (``seq`` is the offset), DESIGN §3.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from ripple.core.filter import Filter

EVENT_COLUMNS = "seq, ts, kind, scope, key, op, event_type, version, old_value, new_value, meta"

# One event as the JSON object of DESIGN §7 (``{"offset":…,…,"meta":{…}}``), built by SQLite from the stored row:
# the stored JSON columns are spliced as they are and names are quoted by json_quote, so a row costs Python one
# string instead of eleven objects. Catch-up and export use it; live frames encode the same bytes with msgspec
# (ripple.wire.event_body) — tests/store/test_event_json.py proves both give identical bytes.
EVENT_JSON = (
    "printf('{\"offset\":%d,\"ts\":%d,\"kind\":%s,\"scope\":%s,\"key\":%s,\"op\":%s,\"event_type\":%s,"
    "\"version\":%d,\"old_value\":%s,\"new_value\":%s,\"meta\":%s}', seq, ts, json_quote(kind), json_quote(scope), "
    "json_quote(key), json_quote(op), json_quote(event_type), version, coalesce(old_value, 'null'), "
    "coalesce(new_value, 'null'), meta)"
)

# A page of events as one value: their EVENT_JSON objects joined by U+001F, which JSON text never holds unescaped
# (control characters inside strings are escaped), so frames are cut and joined in C (bytes.split and join) rather
# than per event in Python. The aggregate reads the ordered LIMIT subquery in its order (SQLite keeps the ORDER BY
# of a subquery that has a LIMIT); from SQLite 3.44 the aggregate's own ORDER BY states it.
EVENT_SEPARATOR = b"\x1f"
_JOINED = "group_concat(body, char(31) ORDER BY seq)" if sqlite3.sqlite_version_info >= (3, 44) else (
    "group_concat(body, char(31))"
)
JOINED_EVENTS = f"CAST({_JOINED} AS BLOB)"  # ripple.store.dialect rewrites it for PostgreSQL

# The head is the last event, or the offset the compacted prefix ends at when no event is left above it (a replay
# that stops at the floor).
HEAD = (
    "SELECT max(coalesce((SELECT max(seq) FROM events), 0), coalesce((SELECT earliest - 1 FROM log_floor), 0))"
)
# The floor (DESIGN §1): the first offset kept, and the first offset from which stream events are kept too.
FLOOR = "SELECT coalesce(max(earliest), 1), coalesce(max(stream_earliest), 1) FROM log_floor"
EARLIEST = "SELECT coalesce(max(earliest), 1) FROM log_floor"

INSERT_EVENT = f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

# -- current state
SELECT_KEY = "SELECT value, version, last_seq, created_seq FROM state WHERE scope = ? AND key = ?"
SELECT_KEYS = "SELECT key, value, version, last_seq, created_seq FROM state WHERE scope = ? AND key IN ({})"
UPSERT_STATE = (
    "INSERT OR REPLACE INTO state (scope, key, value, version, last_seq, created_seq) VALUES (?, ?, ?, ?, ?, ?)"
)
DELETE_STATE = "DELETE FROM state WHERE scope = ? AND key = ?"
# a scope in first-insertion order, one page after a created_seq cursor: key, value, version, last_seq, created_seq
LIST_SCOPE = (
    "SELECT key, value, version, last_seq, created_seq FROM state "
    "WHERE scope = ? AND created_seq > ? ORDER BY created_seq LIMIT ?"
)
LIST_GROUPS = "SELECT DISTINCT scope FROM state ORDER BY scope"

# -- the state as of an offset (time travel), derived from the log and the compacted base (log_base: the state as of
# the floor - 1). Offsets below the floor - 1 cannot be read (ripple.store.retention refuses them first).

# A key as of offset ?3: its last state event at or before it (a 'deleted' one means absent), else its base row.
SELECT_KEY_AT = """
SELECT * FROM (
  SELECT new_value, version, seq, event_type FROM events
   WHERE scope = ?1 AND key = ?2 AND kind = 'state' AND seq <= ?3 ORDER BY seq DESC LIMIT 1)
UNION ALL
SELECT value, version, last_seq, 'created' FROM log_base WHERE scope = ?1 AND key = ?2
ORDER BY 3 DESC LIMIT 1
"""
# Every key as of offset ?: scope, key, value, version, last_seq, created (an independent path from the writer's
# incremental upserts, which is what `verify` compares it with; `import` and `replay` rebuild the state table with it).
# Base rows enter as pseudo-events that carry their incarnation's create offset.
STATE_AT = """
SELECT scope, key, new_value AS value, version, seq AS last_seq, created FROM (
  SELECT scope, key, new_value, version, seq, event_type,
         max(created0) OVER (PARTITION BY scope, key ORDER BY seq ROWS UNBOUNDED PRECEDING) AS created,
         row_number() OVER (PARTITION BY scope, key ORDER BY seq DESC) AS rn
    FROM (SELECT scope, key, value AS new_value, version, last_seq AS seq, 'created' AS event_type,
                 created_seq AS created0 FROM log_base
          UNION ALL
          SELECT scope, key, new_value, version, seq, event_type, CASE WHEN event_type = 'created' THEN seq END
            FROM events WHERE kind = 'state' AND seq <= ?) AS timeline) AS ranked
 WHERE rn = 1 AND event_type != 'deleted'
"""
# Each page key's value as of :at: its last event at or before :at, else its base row (shared with the dialect).
LIST_SCOPE_AT_VALUES = """\
SELECT p.key, coalesce(e.new_value, b.value), coalesce(e.version, b.version), coalesce(e.seq, b.last_seq), p.created
  FROM page p
  LEFT JOIN events e ON e.seq = (SELECT m.seq FROM events m
                                  WHERE m.scope = :scope AND m.key = p.key AND m.kind = 'state' AND m.seq <= :at
                                  ORDER BY m.seq DESC LIMIT 1)
  LEFT JOIN log_base b ON e.seq IS NULL AND b.scope = :scope AND b.key = p.key
 ORDER BY p.created
"""
# One scope as of offset :at, one page after a created cursor (:after): key, value, version, last_seq, created.
# O(page), whatever the size of the scope: the keys come from walking creates in offset order (the partial index
# events_scope_creates, after the base rows' incarnations), and a create is kept when it is its key's last create or
# delete at :at (one seek in the partial index events_lifecycle); each kept key's value is one more seek. A page also
# skips the incarnations in its range that ended before :at (a scope with heavy churn reads those too).
LIST_SCOPE_AT = """
WITH page(key, created) AS (
  SELECT key, created FROM (
    SELECT b.key AS key, b.created_seq AS created FROM log_base b
     WHERE b.scope = :scope AND b.created_seq > :after
       AND NOT EXISTS (SELECT 1 FROM events l INDEXED BY events_lifecycle
                        WHERE l.scope = :scope AND l.key = b.key AND l.kind = 'state'
                          AND l.event_type IN ('created', 'deleted') AND l.seq <= :at)
     ORDER BY b.created_seq LIMIT :limit)
  UNION ALL
  SELECT key, created FROM (
    SELECT c.key AS key, c.seq AS created FROM events c INDEXED BY events_scope_creates
     WHERE c.scope = :scope AND c.kind = 'state' AND c.event_type = 'created' AND c.seq > :after AND c.seq <= :at
       AND c.seq = (SELECT l.seq FROM events l INDEXED BY events_lifecycle
                     WHERE l.scope = :scope AND l.key = c.key AND l.kind = 'state'
                       AND l.event_type IN ('created', 'deleted') AND l.seq <= :at
                     ORDER BY l.seq DESC LIMIT 1)
     ORDER BY c.seq LIMIT :limit)
  ORDER BY created LIMIT :limit)
""" + LIST_SCOPE_AT_VALUES


def list_scope_at_params(scope: str, at: int, after_created: int, limit: int) -> dict[str, Any]:
    return {"scope": scope, "at": at, "after": after_created, "limit": limit}


# -- the compacted base as events (projection rebuilds fold it first): one synthetic `created` event per key alive
# at the floor - 1, at the offset of its last event, in offset order.
BASE_AS_EVENTS = (
    "SELECT last_seq, ts, 'state', scope, key, 'set', 'created', version, NULL, value, '{{}}' FROM log_base "
    "WHERE {where} ORDER BY last_seq LIMIT ?"
)


def base_page(f: Filter, after: int, upto: int, limit: int) -> tuple[str, list[Any]]:
    """One page of the base as event rows (``EVENT_COLUMNS``) in ``(after, upto]`` that ``f`` matches (the base
    holds state only: a ``stream`` filter matches nothing)."""
    where = ["last_seq > ?", "last_seq <= ?"]
    params: list[Any] = [after, upto]
    if f.kind == "stream":
        where.append("0")
    names_where(f, where, params)
    params.append(limit)
    return BASE_AS_EVENTS.format(where=" AND ".join(where)), params


def names_where(f: Filter, where: list[str], params: list[Any]) -> None:
    """Add ``f``'s scope and key conditions (``IN`` lists, sorted so that equal filters give equal statements)."""
    if f.scopes:
        where.append(f"scope IN ({','.join('?' * len(f.scopes))})")
        params.extend(sorted(f.scopes))
    if f.keys:
        where.append(f"key IN ({','.join('?' * len(f.keys))})")
        params.extend(sorted(f.keys))


def events_page(f: Filter, after: int, upto: int | None, limit: int, *, columns: str = EVENT_COLUMNS
                ) -> tuple[str, list[Any]]:
    """One page of the log: the events ``f`` matches in ``(after, upto]``, in offset order, at most ``limit``.

    The one paging strategy for every reader. Each page costs O(page), never O(what is left):
    - one scope (with or without keys): the ``(scope, seq)`` or ``(scope, key, seq)`` index range, already in
      offset order;
    - several scopes: the primary key walk (``NOT INDEXED``) — an ``IN`` over the scope index would make SQLite sort
      every remaining matching row up to ``upto`` for each page, which turns a long catch-up quadratic
      (``bench/paging.py`` measures both);
    - no scope: the primary key walk, which SQLite picks by itself.
    """
    where = ["seq > ?"]
    params: list[Any] = [after]
    if upto is not None:
        where.append("seq <= ?")
        params.append(upto)
    wanted: list[str] = []
    wanted_params: list[Any] = []
    if f.kind != "all":
        wanted.append("kind = ?")
        wanted_params.append(f.kind)
    names_where(f, wanted, wanted_params)
    if f.item_scopes:  # a stream group: its sends, or any state event of its items' scope (Filter.item_scopes)
        items = f"kind = 'state' AND scope IN ({','.join('?' * len(f.item_scopes))})"
        where.append(f"(({' AND '.join(wanted) or '1=1'}) OR ({items}))")
        params.extend([*wanted_params, *sorted(f.item_scopes)])
    else:
        where.extend(wanted)
        params.extend(wanted_params)
    hint = " NOT INDEXED" if len(f.scopes) + len(f.item_scopes) > 1 else ""
    params.append(limit)
    return f"SELECT {columns} FROM events{hint} WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?", params


def events_json_page(f: Filter, after: int, upto: int | None, limit: int) -> tuple[str, list[Any]]:
    """:func:`events_page` as one row ``(count, last offset, the event JSON objects joined by EVENT_SEPARATOR)``."""
    inner, params = events_page(f, after, upto, limit, columns=f"seq, {EVENT_JSON} AS body")
    return f"SELECT count(*), max(seq), {JOINED_EVENTS} FROM ({inner}) AS page", params


def head(conn: sqlite3.Connection) -> int:
    """The last offset in the file (a synchronous connection)."""
    return int(conn.execute(HEAD).fetchone()[0])


def earliest(conn: sqlite3.Connection) -> int:
    """The first offset still in the log (1 when nothing was ever compacted)."""
    return int(conn.execute(EARLIEST).fetchone()[0])


def floor(conn: sqlite3.Connection) -> tuple[int, int]:
    """``(earliest, stream_earliest)``: the first offset kept, and the first from which stream events are kept."""
    row = conn.execute(FLOOR).fetchone()
    return int(row[0]), int(row[1])
