"""What a projection is (DESIGN §6): a name, a version, a scope filter, its own SQL tables and a pure fold.

The fold never names a physical table: the runner passes ``tables`` (logical name → physical name), so the same fold
writes the live tables, a rebuild's shadow generation, or ``verify``'s temporary tables::

    def fold(event, tables):
        delta = 1 if event.event_type == "created" else -1 if event.event_type == "deleted" else 0
        return [(f"UPDATE {tables['stats']} SET total = total + ?", (delta,))]

    Projection("todo_count", 1, schema=["CREATE TABLE {stats} (total INTEGER NOT NULL)"], fold=fold)
"""

from __future__ import annotations

import re
import sqlite3
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import msgspec

from ripple.core.events import Event, KindFilter
from ripple.core.filter import Filter
from ripple.core.validate import validate_scope
from ripple.errors import RegistrationError, RippleError

Statement = tuple[str, Sequence[Any] | Mapping[str, Any]]
Tables = Mapping[str, str]
Fold = Callable[[Event, Tables], Iterable[Statement]]
FoldMany = Callable[[Sequence[Event], Tables], Iterable[Statement]]
Read = Callable[[sqlite3.Connection, Tables], Any]
Mode = Literal["inline", "async"]
Status = Literal["ok", "catching_up", "rebuilding", "failed"]

# A projection or table name becomes part of SQL identifiers; "__" separates the parts of a physical name.
_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
MAX_NAME_CHARS = 64


def check_identifier(what: str, name: object) -> str:
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or not _NAME.match(name):
        raise RegistrationError(
            f"{what} must be 1-{MAX_NAME_CHARS} characters of a-z, 0-9 and single underscores, starting with a "
            f"letter; got {name!r}",
            detail={what.replace(" ", "_"): repr(name)},
        )
    return name


def schema_tables(schema: Sequence[str]) -> tuple[str, ...]:
    """The logical table names a schema uses as ``{placeholders}``, sorted."""
    found: set[str] = set()
    for stmt in schema:
        for _, field, _, _ in string.Formatter().parse(stmt):
            if field is not None:
                found.add(field)
    return tuple(sorted(found))


def default_read(conn: sqlite3.Connection, tables: Tables) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, as ``{table: [{column: value}, ...]}``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for logical, physical in tables.items():
        cur = conn.execute(f"SELECT * FROM {physical} ORDER BY 1")
        columns = [c[0] for c in cur.description]
        out[logical] = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
    return out


class Projection(msgspec.Struct, frozen=True, kw_only=True):
    """A read model folded from the log into its own SQL tables.

    - ``schema``: ``CREATE TABLE`` / ``CREATE INDEX`` statements naming tables as ``{placeholders}`` (a string holding
      several statements is split); the placeholders are the projection's logical tables.
    - ``fold(event, tables)``: pure; returns the ``(sql, params)`` statements one event implies.
    - ``fold_many(events, tables)`` (optional): pure; the statements of several consecutive matching events at once,
      with the same effect on the tables as folding them one by one (e.g. one upsert of summed counters instead of
      one per event). Rebuilds, catch-ups and inline folds call it once per page or group; ``fold`` stays the
      reference: when ``fold_many`` or its statements fail, the events are folded one by one to find the failing one.
    - ``read(conn, tables)``: what ``store.projection(name).data`` holds (default: every row of every table).
    - ``scopes``: only state events of these scopes reach the fold (``None``: every scope); ``kind`` widens it to
      stream events.
    - ``mode``: ``"inline"`` folds inside the writer's transaction (exactly-once, read-your-writes); ``"async"``
      catches up after commit through the writer queue.
    - Bump ``version`` whenever the fold or the schema changes: the store rebuilds it from the log on open.
    """

    name: str
    version: int
    schema: Sequence[str]
    fold: Fold
    read: Read | None = None
    scopes: Sequence[str] | None = None
    kind: KindFilter = "state"
    mode: Mode = "inline"
    description: str = ""
    fold_many: FoldMany | None = None

    def __post_init__(self) -> None:
        check_identifier("projection name", self.name)
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 0:
            raise RegistrationError(f"projection {self.name}: version must be an integer >= 0, got {self.version!r}")
        if not callable(self.fold):
            raise RegistrationError(f"projection {self.name}: fold must be callable, not {type(self.fold).__name__}")
        if self.fold_many is not None and not callable(self.fold_many):
            raise RegistrationError(f"projection {self.name}: fold_many must be callable or None")
        if self.read is not None and not callable(self.read):
            raise RegistrationError(f"projection {self.name}: read must be callable or None")
        if self.mode not in ("inline", "async"):
            raise RegistrationError(f"projection {self.name}: mode must be 'inline' or 'async', not {self.mode!r}")
        if self.kind not in ("state", "stream", "all"):
            raise RegistrationError(f"projection {self.name}: kind must be 'state', 'stream' or 'all'")
        self._check_schema()
        self._check_scopes()

    def _check_schema(self) -> None:
        from ripple.migrations import statements

        schema = self.schema
        if isinstance(schema, str):
            text = schema if schema.rstrip().endswith(";") else schema + ";"
            try:
                schema = statements(text)
            except RuntimeError as exc:
                raise RegistrationError(f"projection {self.name}: schema: {exc}") from None
        if not isinstance(schema, Sequence) or not schema or not all(isinstance(s, str) for s in schema):
            raise RegistrationError(f"projection {self.name}: schema must be a non-empty list of SQL statements")
        tables = schema_tables(schema)
        if not tables:
            raise RegistrationError(
                f"projection {self.name}: the schema names no table; write tables as placeholders, e.g. "
                "'CREATE TABLE {stats} (...)'"
            )
        for table in tables:
            check_identifier(f"projection {self.name}: table name", table)
        msgspec.structs.force_setattr(self, "schema", tuple(schema))

    def _check_scopes(self) -> None:
        if self.scopes is None:
            return
        if isinstance(self.scopes, str) or not self.scopes:
            raise RegistrationError(
                f"projection {self.name}: scopes must be a non-empty list of scopes, or None for every scope",
                detail={"scopes": repr(self.scopes)},
            )
        for scope in self.scopes:
            try:
                validate_scope(scope)
            except RippleError as exc:
                raise RegistrationError(f"projection {self.name}: {exc.message}", detail=exc.detail) from None
        msgspec.structs.force_setattr(self, "scopes", tuple(self.scopes))

    @property
    def tables(self) -> tuple[str, ...]:
        """The logical table names (the schema's placeholders)."""
        return schema_tables(self.schema)

    @property
    def filter(self) -> Filter:
        """The events this projection folds."""
        return Filter.of(self.kind, self.scopes)


class ProjectionState(msgspec.Struct, frozen=True):
    """``store.projection(name)``: the data as of ``checkpoint`` (the last offset folded) and the status."""

    name: str
    version: int
    checkpoint: int
    status: Status
    data: Any
    error: str | None = None
    failed_at: int | None = None
