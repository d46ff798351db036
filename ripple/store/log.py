"""The storage interface the rest of ripple depends on (DESIGN §11).

SQLite implements it today (:class:`~ripple.store.writer.Writer` + :class:`~ripple.store.reader.Reader`); a
PostgreSQL implementation must keep the same promises: offsets gapless and in commit order (appends serialised inside
the writing transaction), acknowledgements only after COMMIT, listeners called in offset order, and reads that never
return an offset beyond the acknowledged head.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from ripple.core.events import Entry, Event, Page
from ripple.core.filter import Filter
from ripple.store.bus import CommitBus
from ripple.store.writer import Job, WriteTxn

T = TypeVar("T")


class LogWriter(Protocol):
    """The one writer of a log: commands in, committed events out."""

    head: int
    bus: CommitBus  # listeners after COMMIT and hooks inside the transaction

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def submit(self, job: Job) -> Any: ...

    async def run_in_txn(self, fn: Callable[[WriteTxn], T]) -> T: ...


class LogReader(Protocol):
    """Reads that never block the writer."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def entry(self, scope: str, key: str) -> Entry | None: ...

    async def entry_at(self, scope: str, key: str, at: int) -> Entry | None: ...

    async def list(self, scope: str, *, limit: int, cursor: str | None, at: int | None) -> Page: ...

    async def list_groups(self) -> builtins.list[str]: ...

    async def read_events(
        self, f: Filter, after: int, limit: int, *, upto: int | None = None
    ) -> builtins.list[Event]: ...

    async def earliest(self) -> int: ...
