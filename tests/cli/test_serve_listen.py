"""``ripple serve`` that cannot listen (the port is taken, the host does not resolve) is one line on stderr and exit
code 2, like any other bad option, and the database file is not created."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.conftest import RIPPLE, SECOND, ripple_env


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RIPPLE, "serve", "app.db", *args], cwd=tmp_path, env=ripple_env(), capture_output=True,
                          text=True, timeout=30 * SECOND)


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = serve(tmp_path, "--port", str(port))
    assert done.returncode == 2, done
    assert done.stderr.startswith("ripple: cannot listen on 127.0.0.1:") and done.stderr.count("\n") == 1, done
    assert "in use" in done.stderr
    assert not (tmp_path / "app.db").exists()


def test_a_host_that_does_not_resolve_is_one_line(tmp_path: Path) -> None:
    done = serve(tmp_path, "--host", "256.1.1.1", "--port", "0")
    assert done.returncode == 2, done
    assert done.stderr.startswith("ripple: cannot listen on 256.1.1.1:0") and done.stderr.count("\n") == 1, done
    assert not (tmp_path / "app.db").exists()
