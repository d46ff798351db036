"""A chaos TCP proxy on 127.0.0.1 for the fault suite: it forwards bytes between clients and a server and, on request,
cuts, stalls or delays connections.

    proxy = await Proxy(upstream_port).start()      # clients connect to proxy.port
    proxy.cut()                                     # abort one random connection (both sides, RST)
    proxy.cut(mid_chunk=True)                       # forward half of the next chunk, then abort (a torn frame)
    proxy.stall(0.2)                                # one connection forwards nothing for 0.2 s
    proxy.slow(0.01, 0.5)                           # one connection delays every chunk by 10 ms for 0.5 s
    await proxy.chaos(random.Random(1), cuts=100)   # random cuts, stalls and delays until 100 cuts happened
    proxy.upstream_port = new_port                  # new connections go to a restarted server
    await proxy.close()

It is real networking (two sockets per connection), not a mock: what a client sees is what a flaky network does.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field

CHUNK = 64 * 1024


@dataclass
class ProxyCounters:
    connections: int = 0
    cuts: int = 0
    torn: int = 0
    stalls: int = 0
    delays: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@dataclass(eq=False)
class Link:
    """One proxied connection: the client's socket, the server's socket and a pump task per direction."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    flowing: asyncio.Event = field(default_factory=asyncio.Event)
    delay: float = 0.0
    tear: bool = False  # forward half of the next chunk, then cut
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    closed: bool = False

    def __post_init__(self) -> None:
        self.flowing.set()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            self.client.transport.abort()
            self.server.transport.abort()


class Proxy:
    def __init__(self, upstream_port: int, *, host: str = "127.0.0.1") -> None:
        self.host = host
        self.upstream_port = upstream_port
        self.port = 0
        self.links: set[Link] = set()
        self.counters = ProxyCounters()
        self._server: asyncio.Server | None = None
        self._connected = asyncio.Event()
        self._timers: set[asyncio.Task[None]] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> Proxy:
        self._server = await asyncio.start_server(self._accept, self.host, 0, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            await self._serve(reader, writer)
        finally:
            self._handlers.discard(handler)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self.host, self.upstream_port)
        except OSError:
            writer.transport.abort()  # the server is down: the client sees a reset, as it would without a proxy
            return
        link = Link(writer, up_writer)
        self.links.add(link)
        self.counters.connections += 1
        self._connected.set()
        link.tasks = [
            asyncio.create_task(self._pump(link, reader, up_writer, up=True)),
            asyncio.create_task(self._pump(link, up_reader, writer, up=False)),
        ]
        try:
            await asyncio.gather(*link.tasks, return_exceptions=True)
        finally:
            link.abort()
            self.links.discard(link)

    async def _pump(self, link: Link, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, up: bool) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()  # pass a half-close on
                    return
                if link.delay:
                    await asyncio.sleep(link.delay)  # sleep-ok: simulated network latency
                await link.flowing.wait()
                if link.tear:
                    writer.write(data[: max(1, len(data) // 2)])
                    self.counters.torn += 1
                    self.counters.cuts += 1
                    link.abort()
                    return
                writer.write(data)
                if up:
                    self.counters.bytes_up += len(data)
                else:
                    self.counters.bytes_down += len(data)
                await writer.drain()
        except (ConnectionError, OSError):
            link.abort()
        finally:
            if link.closed:
                for task in link.tasks:
                    if task is not asyncio.current_task():
                        task.cancel()

    # -- faults

    def _pick(self, rng: random.Random | None) -> Link | None:
        live = [link for link in self.links if not link.closed]
        if not live:
            return None
        return (rng or random).choice(live)

    def cut(self, rng: random.Random | None = None, *, mid_chunk: bool = False) -> bool:
        """Abort one connection now, or (``mid_chunk``) after forwarding half of its next chunk."""
        link = self._pick(rng)
        if link is None:
            return False
        if mid_chunk:
            link.tear = True  # counted as a cut when it happens
        else:
            self.counters.cuts += 1
            link.abort()
        return True

    def cut_all(self) -> int:
        links = [link for link in self.links if not link.closed]
        for link in links:
            link.abort()
        self.counters.cuts += len(links)
        return len(links)

    def stall(self, seconds: float, rng: random.Random | None = None) -> bool:
        """One connection forwards nothing, either way, for ``seconds``."""
        link = self._pick(rng)
        if link is None:
            return False
        self.counters.stalls += 1
        link.flowing.clear()
        self._later(seconds, link.flowing.set)
        return True

    def slow(self, delay: float, seconds: float, rng: random.Random | None = None) -> bool:
        """One connection delays every chunk by ``delay`` for ``seconds``."""
        link = self._pick(rng)
        if link is None:
            return False
        self.counters.delays += 1
        link.delay = delay

        def restore() -> None:
            link.delay = 0.0

        self._later(seconds, restore)
        return True

    def _later(self, seconds: float, fn: object) -> None:
        async def run() -> None:
            await asyncio.sleep(seconds)  # sleep-ok: the length of a simulated stall
            fn()  # type: ignore[operator]

        task = asyncio.create_task(run())
        self._timers.add(task)
        task.add_done_callback(self._timers.discard)

    async def chaos(
        self, rng: random.Random, cuts: int, *, gap: float = 0.03, stop: asyncio.Event | None = None
    ) -> None:
        """Random faults (about 60 % cuts, some of them mid-chunk, 20 % stalls, 20 % delays), ``gap`` seconds apart at
        most, until ``cuts`` connections were cut."""
        target = self.counters.cuts + cuts
        while self.counters.cuts < target and not (stop and stop.is_set()):
            if not any(not link.closed for link in self.links):
                self._connected.clear()
                await asyncio.wait_for(self._connected.wait(), 30)
            await asyncio.sleep(rng.uniform(0, gap))  # sleep-ok: random moments are the point of chaos
            roll = rng.random()
            if roll < 0.45:
                self.cut(rng)
            elif roll < 0.6:
                self.cut(rng, mid_chunk=True)
            elif roll < 0.8:
                self.stall(rng.uniform(0.01, 0.3), rng)
            else:
                self.slow(rng.uniform(0.001, 0.02), rng.uniform(0.05, 0.5), rng)

    async def wait_for_link(self, newer_than: int = 0, seconds: float = 30) -> None:
        """Return once a connection is open and more than ``newer_than`` connections were made in all (pass
        ``counters.connections`` as it was at a cut to wait for the client to reconnect)."""
        while self.counters.connections <= newer_than or not any(not link.closed for link in self.links):
            self._connected.clear()
            await asyncio.wait_for(self._connected.wait(), seconds)

    def calm(self) -> None:
        """End every stall and delay now (the network is good again)."""
        for link in self.links:
            link.flowing.set()
            link.delay = 0.0
            link.tear = False

    async def close(self) -> None:
        for task in list(self._timers):
            task.cancel()
        if self._server is not None:
            self._server.close()
        self.cut_all()
        if self._handlers:
            await asyncio.wait(self._handlers, timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
