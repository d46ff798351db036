"""A child process for the todo kill -9 test: serves the todo example's setup and writes random todo changes forever.

``python todo_child.py DB SEED`` prints ``progress <n>`` every 50 acknowledged changes.
"""

from __future__ import annotations

import asyncio
import random
import sys

from examples.todo import setup
from ripple import Store
from tests.projections.todo_ops import random_todo_op


async def main(db: str, seed: int) -> None:
    rng = random.Random(seed)
    async with Store.open(db) as store:
        setup(store)
        n = 0
        while True:
            await asyncio.gather(*(random_todo_op(store, rng, f"s{seed}-") for _ in range(10)))
            n += 10
            if n % 50 == 0:
                print(f"progress {n}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
