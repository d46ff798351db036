"""``cron`` triggers: one task per trigger that sleeps until the next matching second and calls the function.

The handler gets the engine's payload ``{trigger: "cron", job_id, scheduled_time, actual_time}`` (RFC 3339, UTC).
Runs are not logged and missed runs (while ripple was down) are not caught up, as in iii.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import TYPE_CHECKING

from ripple.iii.cron import parse_cron
from ripple.iii.protocol import CronTriggerConfig

if TYPE_CHECKING:
    from ripple.iii.engine import Engine
    from ripple.iii.registry import TriggerEntry

log = logging.getLogger("ripple.iii")


class CronJob:
    def __init__(self, engine: Engine, entry: TriggerEntry) -> None:
        assert isinstance(entry.config, CronTriggerConfig)
        self.engine = engine
        self.entry = entry
        self.schedule = parse_cron(entry.config.expression)
        self.runs = 0
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"iii-cron-{self.entry.id}")

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _run(self) -> None:
        while True:
            now = dt.datetime.now(dt.UTC)
            scheduled = self.schedule.next_after(now)
            if scheduled is None:
                log.warning("cron trigger %s (%s) will never fire again", self.entry.id, self.schedule.expression)
                return
            await asyncio.sleep((scheduled - now).total_seconds())  # the schedule itself
            data = {
                "trigger": "cron",
                "job_id": self.entry.id,
                "scheduled_time": scheduled.isoformat(),
                "actual_time": dt.datetime.now(dt.UTC).isoformat(),
            }
            self.runs += 1
            await self.engine.call_trigger(self.entry, data, what=f"cron {scheduled.isoformat()}")
