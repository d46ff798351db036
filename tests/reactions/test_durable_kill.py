"""A durable reaction survives ``kill -9`` between commit and handling: no event lost, writes applied exactly once."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
from pathlib import Path

from ripple import Store
from tests.conftest import SECOND, count, ripple_env
from tests.reactions.durable_child import mirror_handler

CHILD = Path(__file__).with_name("durable_child.py")


async def read_until_ready(proc: asyncio.subprocess.Process) -> int:
    """Wait until the child has written everything and its reaction hangs; return the offset it hangs on."""
    assert proc.stdout is not None
    written, blocked = False, None
    while not (written and blocked is not None):
        line = (await proc.stdout.readline()).decode()
        assert line, "the child exited early"
        if line.startswith("written"):
            written = True
        elif line.startswith("blocked"):
            blocked = int(line.split()[1])
    return blocked


async def test_durable_reaction_survives_kill_9(tmp_path: Path) -> None:
    db, effects = tmp_path / "kill.db", tmp_path / "effects.txt"
    rng = random.Random(4)
    per_round = 60
    for _ in range(count(5, 50)):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(CHILD), str(db), str(effects), str(per_round), str(rng.randint(1, per_round)),
            stdout=subprocess.PIPE, env=ripple_env(),
        )
        try:
            await asyncio.wait_for(read_until_ready(proc), 30 * SECOND)
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
    async with Store.open(db) as store:
        store.on_change("in", mirror_handler(str(effects), None), name="mirror", start="beginning")
        await asyncio.wait_for(store.reactions.wait_idle(), 30 * SECOND)
        sources = {e.key: e.value for e in (await store.list("in", limit=1000)).items}
        mirrored = {e.key: e.value for e in (await store.list("out", limit=1000)).items}
        in_offsets = [e.offset for e in await store.read_events(after=0, limit=10_000) if e.scope == "in"]
        assert len(sources) == len(in_offsets) == count(5, 50) * per_round
        assert mirrored == sources  # nothing lost
        assert await store.get("count", "n") == {"n": len(in_offsets)}  # staged writes applied exactly once
    handled = [int(x) for x in effects.read_text().split()]
    assert set(handled) == set(in_offsets)  # external effects: at least once
    assert len(handled) > len(set(handled))  # ... and some twice: the hung events ran again after the restart
