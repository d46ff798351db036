"""A child process for the kill -9 tests: writes events while a durable reaction handles them, then hangs.

``python durable_child.py DB EFFECTS N BLOCK_AT``: writes N events to scope ``in`` (keys ``r<round>-<i>``); the durable
reaction ``mirror`` copies each into ``out``, counts it in ``count/n`` (staged writes) and appends the offset to the
EFFECTS file (an external effect). From the BLOCK_AT-th event it handles, it hangs inside the handler, after its
external effect: committed but not handled. It prints ``written`` once every write is acknowledged and ``blocked
<offset>`` when it hangs; the parent then kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from ripple import ChangeEvent, Store, Writes


def mirror_handler(effects: str, block_at: int | None) -> Callable[[ChangeEvent, Writes], Awaitable[None]]:
    handled = 0

    async def mirror(event: ChangeEvent, writes: Writes) -> None:
        nonlocal handled
        with open(effects, "a") as f:
            f.write(f"{event.offset}\n")
        handled += 1
        if block_at is not None and handled >= block_at:
            print(f"blocked {event.offset}", flush=True)
            await asyncio.Event().wait()
        writes.set("out", event.key, event.new_value)
        writes.update("count", "n", [{"type": "increment", "path": "n", "by": 1}])

    return mirror


async def main(db: str, effects: str, n: int, block_at: int) -> None:
    async with Store.open(db) as store:
        store.on_change("in", mirror_handler(effects, block_at), name="mirror", start="beginning")
        base = store.head
        await asyncio.gather(*(store.set("in", f"r{base}-{i}", i) for i in range(n)))
        print("written", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
