"""Child for the kill -9 test: writes under load and prints each acknowledged write as "offset key value"."""

from __future__ import annotations

import asyncio
import sys

from ripple import Store


async def main(path: str, durability: str, producers: int) -> None:
    async with Store.open(path, durability=durability) as store:
        print(f"ready {store.head}", flush=True)

        async def produce(p: int) -> None:
            i = 0
            while True:
                key = f"p{p}-{i}"
                r = await store.set("d", key, {"p": p, "i": i})
                sys.stdout.write(f"{r.offset} {key} {i}\n")
                sys.stdout.flush()
                i += 1

        await asyncio.gather(*[produce(p) for p in range(producers)])


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
