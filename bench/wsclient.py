"""A lean WebSocket client for the fan-out benchmark: many connections in one process, little work per frame.

A load generator must be faster than the servers it measures, or both look the same. This one speaks just enough of
RFC 6455 for the benchmark (the upgrade handshake, unmasked server frames, masked pongs and close) on plain asyncio
protocols (uvloop when installed), and decodes each frame once with a msgspec Struct holding only what it measures.

Run as a process by ``bench/fanout.py``:

    python bench/wsclient.py live URL N       # N subscribers; prints "ready", latencies after "stop" on stdin
    python bench/wsclient.py catchup URL      # one subscriber reads until "live"/"end"; prints events and seconds
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import msgspec


class _T(msgspec.Struct):
    t: float = 0.0


class _Ev(msgspec.Struct):
    new_value: _T | None = None


class _Frame(msgspec.Struct):
    type: str
    new_value: _T | None = None
    events: list[_Ev] = []


_decode_live = msgspec.json.Decoder(_Frame).decode
_NEW_T = b'"new_value":{"t":'
_decode_any = msgspec.json.Decoder(dict[str, Any]).decode  # catch-up: decode every event, as a real client does


class Connection(asyncio.Protocol):
    """One client connection: handshake, then every text frame to ``on_text(payload)``."""

    def __init__(self, host: str, path: str, on_text: Any) -> None:
        self.host, self.path, self.on_text = host, path, on_text
        self.buf = bytearray()
        self.open: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        if not buf and self.open.done() and len(data) >= 2 and data[0] == 0x81 and len(data) == 2 + data[1] < 128:
            self.on_text(data[2:])  # the common case: one small, whole text frame
            return
        buf += data
        if not self.open.done():
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.open.set_exception(RuntimeError(bytes(buf[:end]).decode(errors="replace")))
                return
            del buf[: end + 4]
            self.open.set_result(None)
        pos, size = 0, len(buf)
        while size - pos >= 2:
            b0, n = buf[pos], buf[pos + 1] & 0x7F
            head = 2
            if n == 126:
                if size - pos < 4:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 4], "big"), 4
            elif n == 127:
                if size - pos < 10:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
            if size - pos < head + n:
                break
            payload = bytes(buf[pos + head : pos + head + n])
            pos += head + n
            opcode = b0 & 0x0F
            if opcode == 1:
                self.on_text(payload)
            elif opcode == 9:
                self._send(0xA, payload)  # pong
            elif opcode == 8:
                self._send(0x8, payload[:2])
                if self.transport is not None:
                    self.transport.close()
        del buf[:pos]

    def _send(self, opcode: int, payload: bytes) -> None:
        """A masked client frame (payloads here are under 126 bytes: pongs and closes)."""
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        if self.transport is not None:
            self.transport.write(bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.open.done():
            self.open.set_exception(exc or ConnectionError("closed during the handshake"))
        if not self.closed.done():
            self.closed.set_result(None)


async def connect(url: str, on_text: Any) -> Connection:
    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: Connection(parts.netloc, path, on_text), parts.hostname,
                                           parts.port)
    await asyncio.wait_for(conn.open, 60)
    return conn


async def live(url: str, n: int) -> None:
    """N subscribers: wait until each is live (ripple's ``live`` frame; a bare server has none), then record the
    latency of every event: receipt time - the ``t`` the writer put in its value."""
    lat: list[float] = []
    ripple = "/v1/subscribe" in url
    live_seen = asyncio.Event()
    n_live = 0

    def on_text_for() -> Any:
        def on_text(payload: bytes) -> None:
            nonlocal n_live
            now = time.time()
            if payload.startswith(b'{"type":"event",'):  # one event: read its "t" without decoding the frame
                at = payload.find(_NEW_T)
                if at >= 0:
                    at += len(_NEW_T)
                    end = at
                    while payload[end] not in b",}":
                        end += 1
                    lat.append(now - float(payload[at:end]))
                return
            frame = _decode_live(payload)
            kind = frame.type
            if kind == "event":
                if frame.new_value is not None:
                    lat.append(now - frame.new_value.t)
            elif kind == "events":
                lat.extend(now - e.new_value.t for e in frame.events if e.new_value is not None)
            elif kind == "live":
                n_live += 1
                if n_live == n:
                    live_seen.set()

        return on_text

    conns: list[Connection] = []
    for start in range(0, n, 100):
        conns += await asyncio.gather(*(connect(url, on_text_for()) for _ in range(start, min(n, start + 100))))
    if ripple:
        await asyncio.wait_for(live_seen.wait(), 120)
    print("ready", flush=True)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # "stop" from the driver
    for c in conns:
        if c.transport is not None:
            c.transport.abort()
    lat = sorted(x for x in lat if x >= 0)
    print(json.dumps({"n": len(lat), "p50": pct(lat, 50), "p99": pct(lat, 99), "max": lat[-1] * 1000 if lat else 0,
                      "client_cpu": (time.process_time() - cpu0) / (time.perf_counter() - wall0)}), flush=True)


async def catchup(url: str) -> None:
    n = 0
    done = asyncio.get_running_loop().create_future()
    started = time.perf_counter()

    def on_text(payload: bytes) -> None:
        nonlocal n
        frame = _decode_any(payload)
        kind = frame["type"]
        if kind == "events":
            n += len(frame["events"])
        elif kind == "event":
            n += 1
        elif kind in ("live", "end") and not done.done():
            done.set_result(time.perf_counter() - started)

    cpu0 = time.process_time()
    conn = await connect(url, on_text)
    seconds = await asyncio.wait_for(done, 600)
    cpu = time.process_time() - cpu0
    if conn.transport is not None:
        conn.transport.abort()
    print(json.dumps({"events": n, "seconds": seconds, "client_cpu_us": cpu / max(1, n) * 1e6}), flush=True)


def pct(sorted_values: list[float], p: int) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))] * 1000


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(65536, hard), hard))
    mode, url = sys.argv[1], sys.argv[2]
    coro = live(url, int(sys.argv[3])) if mode == "live" else catchup(url)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


if __name__ == "__main__":
    main()
