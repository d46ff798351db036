"""Every code sample in the documentation runs as written: README.md, ARCHITECTURE.md, CHANGELOG.md and docs/*.md.

How a page's fences run (the convention for whoever writes docs):

- **One page, one session.** A page's fences run in order, in one fresh temporary folder per page, so a file that one
  fence makes (``app.db``, ``events.jsonl``) is there for the next. The checkout is on ``PYTHONPATH`` (so
  ``--app examples.todo:setup`` imports), and ``ripple`` and ``python`` on ``PATH`` are this interpreter's.
- ```` ```python ```` / ```` ```py ````: a complete program, run as ``python fence.py`` (no top-level ``await``, no
  name defined elsewhere). It must exit 0 within the timeout.
- ```` ```bash ```` / ```` ```sh ```` / ```` ```shell ````: run with ``bash -euo pipefail``; every command must succeed.
  ``curl`` must reach the server, get no 5xx, and never hit a route that does not exist (a ``no route for …`` 404 or
  a 405): samples that show a 404 for a missing *key* or a 412 are fine.
- **A server.** ``localhost:8000`` and ``127.0.0.1:8000`` in any fence mean the page's own ``ripple serve``: started
  (serving ``./ripple.db`` in the page's folder, on a free port that replaces ``8000``) before the first fence that
  names it and stopped after the page. ``<!-- docs-test: serve-options --app examples.todo:setup -->`` anywhere on
  the page passes options to it.
- **Starting a server.** A bash fence whose every command is ``ripple serve …`` is what a reader types to start one:
  each command is started (in a folder of its own, with ``--port 0`` and ``0`` for the iii ports added), must print
  ``ripple serving``, and must exit 0 on SIGTERM. Don't mix ``ripple serve`` with other commands in one fence.
- ```` ```json ```` must parse. Every fence names its language (``text`` for output); an unknown one fails.
- ``<!-- docs-test: skip (why) -->`` on the line right before a fence: not run. Markers are lines of their own. Every
  skipped fence is listed in ``SKIPPED`` below, so a new skip is a visible decision; keep the list short.
- Fences start at the beginning of a line: an indented fence (inside a list) would escape this test and is refused.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ROOT, SECOND

PAGES = sorted(
    [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("**/*.md")]
)
PYTHON = {"python", "py"}
SHELL = {"bash", "sh", "shell"}
KNOWN = PYTHON | SHELL | {
    "json", "text", "console", "mermaid", "javascript", "js", "typescript", "ts", "toml", "yaml", "ini", "sql",
    "html", "css", "dockerfile", "http",
}

# Fences that carry ``<!-- docs-test: skip (why) -->``: (page relative to the checkout, the reason as written).
SKIPPED = {
    ("README.md", "installs ripple into a new virtualenv and runs the server until stopped"),
    ("README.md", "runs the whole test suite"),
    ("docs/iii.md", "needs an iii worker connected (node or the PyPI iii SDK)"),
    ("docs/reliability.md", "runs the fault suite (minutes)"),
    ("docs/cli.md", "runs until interrupted"),
    ("README.md", "needs a Docker engine"),
    ("README.md", "runs the server until stopped"),
    ("docs/scaling.md", "needs a PostgreSQL server; tests/store/test_postgres.py runs the same against one"),
    ("README.md", "needs a PostgreSQL server; tests/store/test_postgres.py runs the same against one"),
    ("docs/scaling.md", "starts PostgreSQL and runs the whole test suite"),
}

# An info string never holds a backtick (CommonMark), so a line of inline code spans is not taken for a fence.
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[^\s`]*)[^\n`]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$", re.M | re.S)
# A marker is an HTML comment on a line of its own (so prose that quotes one in backticks is not a marker).
MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<what>[\w-]+)\s*(?P<arg>.*?)\s*-->[ \t]*$", re.M)
SERVER_ADDRESS = re.compile(r"\b(?:localhost|127\.0\.0\.1):8000\b")
STARTED = re.compile(r"^ripple serving .+ on http://127\.0\.0\.1:(?P<port>\d+) ")
FENCE_TIMEOUT = 90 * SECOND

# Observes curl without changing what it prints: the status goes to stderr, the body is copied to a file.
CURL_WATCH = """curl() {
    command curl --silent --show-error --write-out '%{stderr}docs-test-status %{http_code}\\n' "$@" \\
        | tee -a "$DOCS_TEST_RESPONSES"
}
"""


@dataclass(frozen=True)
class Fence:
    page: Path
    line: int
    lang: str
    code: str
    indent: str
    skip: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page}:{self.line}"


def fences(page: Path) -> list[Fence]:
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        skip = None
        if marker is not None and marker.group("what") == "skip":
            skip = marker.group("arg").strip().removeprefix("(").removesuffix(")")
        found.append(Fence(page, text.count("\n", 0, match.start()) + 1, match.group("lang").lower(),
                           match.group("code"), match.group("indent"), skip))
    return found


def serve_options(page: Path) -> list[str]:
    options: list[str] = []
    for marker in MARKER.finditer(page.read_text()):
        if marker.group("what") == "serve-options":
            options += shlex.split(marker.group("arg"))
    return options


def commands(code: str) -> list[str]:
    """The commands of a shell fence: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n", " ", code)
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def starts_server(fence: Fence) -> bool:
    found = commands(fence.code)
    return bool(found) and all(c.startswith("ripple serve") for c in found)


# ---- running a page ---------------------------------------------------------------------------------------------


class PageRun:
    """One page's session: its folder, its shims on PATH, and its server once a fence needs one."""

    def __init__(self, page: Path, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.server: subprocess.Popen[str] | None = None
        self.port: int | None = None
        shims = folder / ".bin"
        shims.mkdir()
        for name, target in (("ripple", f'"{sys.executable}" -m ripple'), ("python", f'"{sys.executable}"'),
                             ("python3", f'"{sys.executable}"')):
            (shims / name).write_text(f'#!/bin/sh\nexec {target} "$@"\n')
            (shims / name).chmod(0o755)
        self.env = dict(os.environ)
        self.env["PATH"] = os.pathsep.join([str(shims), self.env.get("PATH", "")])
        self.env["PYTHONPATH"] = os.pathsep.join([str(ROOT), self.env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        self.env.pop("RIPPLE_DB", None)
        self.responses = folder / ".curl-responses"
        self.env["DOCS_TEST_RESPONSES"] = str(self.responses)

    # -- the page's server

    def address(self, code: str) -> str:
        if not SERVER_ADDRESS.search(code):
            return code
        if self.server is None:
            self.server, self.port = start_server(
                ["serve", "--port", "0", *serve_options(self.page)], self.folder, self.env
            )
        return SERVER_ADDRESS.sub(f"127.0.0.1:{self.port}", code)

    def close(self) -> None:
        if self.server is not None:
            stop_server(self.server)
            self.server = None

    # -- fences

    def run(self, fence: Fence) -> None:
        if fence.lang in PYTHON:
            self.run_python(fence)
        elif fence.lang in SHELL:
            if starts_server(fence):
                self.run_server_fence(fence)
            else:
                self.run_shell(fence)
        elif fence.lang == "json":
            try:
                json.loads(fence.code)
            except ValueError as exc:
                pytest.fail(f"{fence.where}: the json fence does not parse: {exc}")

    def run_python(self, fence: Fence) -> None:
        script = self.folder / f".fence-{fence.line}.py"
        script.write_text(self.address(fence.code))
        self.check(fence, [sys.executable, str(script)])

    def run_shell(self, fence: Fence) -> None:
        code = self.address(fence.code)
        self.responses.write_text("")
        done = self.check(fence, ["bash", "-euo", "pipefail", "-c", CURL_WATCH + code])
        statuses = [int(s) for s in re.findall(r"^docs-test-status (\d+)$", done.stderr, re.M)]
        assert all(s < 500 for s in statuses), f"{fence.where}: a request answered {statuses}\n{done.stdout}"
        bodies = self.responses.read_text()
        assert "no route for" not in bodies and '"method_not_allowed"' not in bodies, (
            f"{fence.where}: a request went to a route that does not exist:\n{bodies}"
        )

    def run_server_fence(self, fence: Fence) -> None:
        for n, command in enumerate(commands(fence.code)):
            argv = shlex.split(command, comments=True)[1:]  # drop "ripple"
            argv += ["--port", "0"]
            if "--iii" in argv:
                argv += ["--iii-worker-port", "0", "--iii-http-port", "0", "--iii-stream-port", "0"]
            if "--iii-rbac-port" in argv:  # the last value given wins
                argv += ["--iii-rbac-port", "0"]
            folder = self.folder / f".serve-{fence.line}-{n}"
            folder.mkdir()
            server, _ = start_server(argv, folder, self.env, where=f"{fence.where}: {command}")
            stop_server(server)

    def check(self, fence: Fence, argv: list[str]) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(argv, cwd=self.folder, env=self.env, capture_output=True, text=True,
                                  timeout=FENCE_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{fence.where}: the {fence.lang} fence did not finish within {FENCE_TIMEOUT:.0f} s")
        if done.returncode != 0:
            pytest.fail(f"{fence.where}: the {fence.lang} fence exited {done.returncode}\n"
                        f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
        return done


def start_server(args: list[str], folder: Path, env: dict[str, str], where: str = "") -> tuple[
        subprocess.Popen[str], int]:
    """``ripple ARGS`` in ``folder``; returns once it printed ``ripple serving`` (and the port it bound)."""
    with (folder / ".server.stderr").open("a") as err:
        server = subprocess.Popen([sys.executable, "-m", "ripple", *args], cwd=folder, env=env, text=True,
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
    assert server.stdout is not None
    line = read_line(server, FENCE_TIMEOUT)
    match = STARTED.match(line)
    if match is None:
        stop_server(server, check=False)
        pytest.fail(f"{where or folder}: the server did not start: {line!r}\n{server_log(folder)}")
    return server, int(match.group("port"))


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The child's first stdout line, or "" if it closed stdout or did not print one in time."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return proc.stdout.readline()


def stop_server(server: subprocess.Popen[str], *, check: bool = True) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
    try:
        server.communicate(timeout=FENCE_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.kill()
        server.communicate()
        pytest.fail("the server did not stop on SIGTERM")
    if check:
        assert server.returncode == 0, f"the server exited {server.returncode}"


def server_log(folder: Path) -> str:
    log = folder / ".server.stderr"
    return log.read_text(errors="replace") if log.exists() else ""


@contextmanager
def page_run(page: Path, folder: Path) -> Iterator[PageRun]:
    run = PageRun(page, folder)
    try:
        yield run
    finally:
        run.close()


def run_page(page: Path, folder: Path) -> None:
    with page_run(page, folder) as run:
        for fence in fences(page):
            if fence.skip is None:
                run.run(fence)


# ---- the tests --------------------------------------------------------------------------------------------------


def test_the_pages_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "ARCHITECTURE.md", "CHANGELOG.md", "docs/rest.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_samples_run(page: Path, tmp_path: Path) -> None:
    run_page(page, tmp_path)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_fences_are_runnable_or_named(page: Path) -> None:
    for fence in fences(page):
        assert fence.lang, f"{fence.where}: name the fence's language (text for output)"
        assert fence.lang in KNOWN, f"{fence.where}: unknown fence language {fence.lang!r}"
        if fence.lang in PYTHON | SHELL:
            assert not fence.indent, f"{fence.where}: an indented {fence.lang} fence: start it at the line start"
        if fence.lang in SHELL and not starts_server(fence) and fence.skip is None:
            assert not any(c.startswith("ripple serve") for c in commands(fence.code)), (
                f"{fence.where}: put `ripple serve` in a fence of its own (the test starts and stops it)"
            )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_markers_are_known_and_in_place(page: Path) -> None:
    markers = [m.group("what") for m in MARKER.finditer(page.read_text())]
    assert set(markers) <= {"skip", "serve-options"}, f"{page}: unknown docs-test markers {markers}"
    skipped = [f for f in fences(page) if f.skip is not None]
    assert markers.count("skip") == len(skipped), f"{page}: a skip marker must be on the line right before its fence"


def test_skipped_fences_are_the_listed_ones() -> None:
    found = {(f.page.relative_to(ROOT).as_posix(), f.skip) for p in PAGES for f in fences(p) if f.skip is not None}
    assert found == SKIPPED


# ---- the runner can fail ----------------------------------------------------------------------------------------

# kind -> (a page holding one sample with a typo, what the failure must say)
TYPOS = {
    "python": ("```python\nimport asyncio\nfrom ripple import Store\n\nasync def main() -> None:\n"
               "    async with Store.open('a.db') as store:\n        await store.sett('s', 'k', 1)\n\n"
               "asyncio.run(main())\n```\n", "has no attribute 'sett'"),
    "bash": ("```bash\nripple lgo --db a.db\n```\n", "No such command 'lgo'"),
    "route": ("```bash\ncurl -X PUT localhost:8000/v1/stat/notes/a -H 'content-type: application/json' -d 1\n```\n",
              "no route for PUT /v1/stat/notes/a"),
    "method": ("```bash\ncurl -X POST localhost:8000/v1/state/notes/a -H 'content-type: application/json' -d 1\n```\n",
               "method_not_allowed"),
    "server": ("```bash\nripple serve --ap examples.todo:setup\n```\n", "No such option '--ap'"),
    "json": ('```json\n{"error": {"code": "x",}}\n```\n', "does not parse"),
}


@pytest.mark.parametrize("kind", sorted(TYPOS))
def test_a_sample_with_a_typo_fails(kind: str, tmp_path: Path) -> None:
    sample, reason = TYPOS[kind]
    page = tmp_path / "page.md"
    page.write_text(f"# A page\n\n{sample}")
    folder = tmp_path / "run"
    folder.mkdir()
    with pytest.raises((pytest.fail.Exception, AssertionError), match=re.escape(reason)):
        run_page(page, folder)


def test_a_correct_sample_passes(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "```bash\ncurl -X PUT localhost:8000/v1/state/notes/a -H 'content-type: application/json' -d 1\n"
        "curl localhost:8000/v1/state/notes/missing   # a 404 for a missing key is fine\n```\n"
        "```python\nprint('ok')\n```\n"
    )
    folder = tmp_path / "run"
    folder.mkdir()
    run_page(page, folder)
