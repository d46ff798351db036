"""A real ``ripple serve`` child process for the fault suite: start, ``kill -9``, restart on the same file and port,
and read its memory and file descriptors from ``/proc``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
from pathlib import Path

import httpx

from tests.conftest import RIPPLE, ROOT, SECOND, ripple_env

TODO_APP = "examples.todo:setup"
_STARTED = re.compile(r"^ripple serving (?P<db>.+) on (?P<url>http://[\d.]+:\d+) ")


def free_port() -> int:
    """A port nobody listens on right now (the child binds it with SO_REUSEADDR, so restarts can reuse it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServeChild:
    """``ripple serve DB --port PORT ARGS`` as a child process; stderr goes to ``<db>.stderr`` for diagnostics."""

    def __init__(self, db: Path | str, *args: str, port: int | None = None, stderr_path: Path | None = None) -> None:
        self.db = db  # a file, or a postgresql:// URL (then give stderr_path)
        self.args = args
        self.port = port if port is not None else free_port()
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr_path = stderr_path or Path(db).with_name(Path(db).name + ".stderr")

    @property
    def db_file(self) -> Path:
        """The database file (a child serving a SQLite file, not a PostgreSQL URL)."""
        assert isinstance(self.db, Path), f"{self.db} is not a file"
        return self.db

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> ServeChild:
        assert self.proc is None or self.proc.returncode is not None, "already running"
        with self.stderr_path.open("ab") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *RIPPLE, "serve", str(self.db), "--port", str(self.port), *self.args,
                cwd=ROOT, env=ripple_env(), stdout=subprocess.PIPE, stderr=err,
            )
        assert self.proc.stdout is not None
        line = (await asyncio.wait_for(self.proc.stdout.readline(), 30 * SECOND)).decode()
        match = _STARTED.match(line)
        assert match, (line, self.stderr())
        assert match.group("url") == self.url, line
        return self

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    async def kill(self) -> None:
        """``kill -9``: no shutdown code runs; whatever was in flight is cut off."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> int:
        """SIGTERM and wait for the graceful shutdown; returns the exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.communicate(), 30 * SECOND)
        assert self.proc.returncode is not None
        return self.proc.returncode

    def rss_kib(self) -> int:
        """Resident memory of the child now (``VmRSS`` in ``/proc/<pid>/status``), in KiB."""
        return _status_kib(self.pid, "VmRSS")

    def hwm_kib(self) -> int:
        """The child's peak resident memory so far (``VmHWM``), in KiB."""
        return _status_kib(self.pid, "VmHWM")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    async def health(self) -> dict[str, object]:
        async with httpx.AsyncClient(base_url=self.url, timeout=10 * SECOND) as client:
            response = await client.get("/v1/health")
        assert response.status_code == 200, response.text
        body: dict[str, object] = response.json()
        return body


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} missing from /proc/{pid}/status")


def run_verify(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m ripple verify --db DB ARGS`` (read-only; works beside a live server and after a crash)."""
    return subprocess.run(
        [*RIPPLE, "verify", "--db", str(db), *args],
        cwd=ROOT, env=ripple_env(), capture_output=True, text=True, timeout=120 * SECOND,
    )


__all__ = ["TODO_APP", "ServeChild", "free_port", "run_verify"]
