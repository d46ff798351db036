"""Durability: an acknowledged write survives kill -9 of the process that made it (DESIGN §3)."""

from __future__ import annotations

import asyncio
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from ripple import Store
from ripple.core.fold import fold_state
from ripple.store.sql import EVENT_COLUMNS
from ripple.store.sqlite import row_to_event
from tests.conftest import ROOT, SECOND, count, ripple_env

CHILD = ROOT / "tests" / "store" / "durable_child.py"


def read_line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    return child.stdout.readline()


async def one_round(path: Path, durability: str, rng: random.Random) -> tuple[int, int]:
    """Run the child, kill -9 it after a random number of acks; return (acked, head after reopen)."""
    child = subprocess.Popen([sys.executable, str(CHILD), str(path), durability, "8"],
                             stdout=subprocess.PIPE, text=True, env=ripple_env())
    acked: dict[str, tuple[int, int]] = {}
    try:
        ready = await asyncio.wait_for(asyncio.to_thread(read_line, child), 30 * SECOND)
        assert ready.startswith("ready"), ready
        stop_after = rng.randint(1, 400)
        while len(acked) < stop_after:
            line = await asyncio.wait_for(asyncio.to_thread(read_line, child), 30 * SECOND)
            offset_text, key, value_text = line.split()
            acked[key] = (int(offset_text), int(value_text))
        child.send_signal(signal.SIGKILL)
        # lines already printed are acknowledged writes too: read them all
        assert child.stdout is not None
        rest = await asyncio.to_thread(child.stdout.read)
        for line in rest.splitlines():
            parts = line.split()
            if len(parts) == 3:  # the last line may be cut by the kill
                acked[parts[1]] = (int(parts[0]), int(parts[2]))
    finally:
        child.kill()
        child.wait()
    async with Store.open(path) as store:
        for key, (offset, i) in acked.items():
            entry = await store.entry("d", key)
            assert entry is not None, f"acknowledged write {key} at offset {offset} was lost"
            assert entry.value["i"] == i and entry.offset == offset
        head = store.head
    conn = sqlite3.connect(path)
    try:
        events = [row_to_event(r) for r in conn.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY seq")]
        assert [e.offset for e in events] == list(range(1, head + 1))
        state = {(s, k): msgspec.json.decode(v) for s, k, v in conn.execute("SELECT scope, key, value FROM state")}
        assert state == {k: f.value for k, f in fold_state(events).items()}
    finally:
        conn.close()
    return len(acked), head


@pytest.mark.parametrize("durability", ["full", "normal"])
async def test_acknowledged_writes_survive_kill_9(tmp_path: Path, durability: str) -> None:
    rng = random.Random()
    path = tmp_path / "durable.db"
    rounds = count(5, 50) if durability == "full" else count(2, 10)
    total = 0
    for _ in range(rounds):
        acked, head = await one_round(path, durability, rng)
        total += acked
        assert head >= total  # every acknowledged write is there; unacknowledged ones may be too
