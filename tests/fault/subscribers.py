"""Recording ``ripple.client`` subscribers and the log they must match, read over HTTP from a running server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import httpx

from ripple.client import Backoff, subscribe
from ripple.core.events import KindFilter

FAST = Backoff(initial=0.02, maximum=0.25)  # reconnect quickly: a test waits for it


class Recorder:
    """One ``ripple.client.subscribe`` iterator run in a task, recording every offset it yields."""

    def __init__(
        self, url: str, name: str, *, scopes: Sequence[str] = (), kind: KindFilter = "state", after: int = 0
    ) -> None:
        self.url, self.name, self.scopes, self.kind, self.after = url, name, tuple(scopes), kind, after
        self.offsets: list[int] = []
        self._target = 0
        self._reached = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def matches(self, event: dict[str, Any]) -> bool:
        return (self.kind == "all" or event["kind"] == self.kind) and (
            not self.scopes or event["scope"] in self.scopes
        )

    def start(self) -> Recorder:
        self._task = asyncio.create_task(self._run(), name=f"recorder-{self.name}")
        return self

    async def _run(self) -> None:
        events = subscribe(self.url, scopes=self.scopes, kind=self.kind, after=self.after, backoff=FAST)
        async for event in events:
            self.offsets.append(event.offset)
            if self._target and event.offset >= self._target:
                self._reached.set()

    async def wait_through(self, offset: int, seconds: float) -> None:
        """Wait until this subscriber has yielded an event with offset >= ``offset``."""
        if offset <= self.after or (self.offsets and self.offsets[-1] >= offset):
            return
        self._target = offset
        self._reached.clear()
        waiter = asyncio.ensure_future(self._reached.wait())
        assert self._task is not None
        done, _ = await asyncio.wait({waiter, self._task}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._task in done:
            await self._task  # the iterator raised: show why
        assert waiter in done, f"{self.name}: stuck at {self.offsets[-1:]} waiting for {offset}"

    def check(self, log: list[dict[str, Any]]) -> tuple[int, int]:
        """Assert exactly the log's matching events, in order; returns (lost, duplicated) for the figures."""
        expected = [e["offset"] for e in log if e["offset"] > self.after and self.matches(e)]
        lost = len(set(expected) - set(self.offsets))
        duplicated = len(self.offsets) - len(set(self.offsets))
        assert all(a < b for a, b in zip(self.offsets, self.offsets[1:], strict=False)), f"{self.name}: not increasing"
        assert self.offsets == expected, f"{self.name}: lost {lost}, duplicated {duplicated}"
        return lost, duplicated

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def read_log(client: httpx.AsyncClient, after: int = 0) -> list[dict[str, Any]]:
    """Every event after ``after`` (all kinds), paged through ``GET /v1/events``."""
    events: list[dict[str, Any]] = []
    while True:
        response = await client.get("/v1/events", params={"after": after, "limit": 1000, "kind": "all"})
        assert response.status_code == 200, response.text
        page = response.json()
        events += page["events"]
        if not page["events"]:
            return events
        after = page["next_after"]


def assert_gapless(log: list[dict[str, Any]], first: int = 1) -> None:
    offsets = [e["offset"] for e in log]
    assert offsets == list(range(first, first + len(offsets))), "offsets have a gap or a repeat"


async def wait_all(recorders: Sequence[Recorder], log: list[dict[str, Any]], seconds: float) -> None:
    """Wait until each recorder has yielded its last matching event of ``log``."""
    async def one(rec: Recorder) -> None:
        last = max((e["offset"] for e in log if rec.matches(e)), default=0)
        await rec.wait_through(last, seconds)

    await asyncio.gather(*(one(r) for r in recorders))

