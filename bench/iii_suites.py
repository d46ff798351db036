"""Run the iii SDKs' own integration suites and the official example apps against ``ripple serve --iii``.

    python bench/iii_suites.py /path/to/iii [--todo-app /path/to/todo-app] [--suite node --suite python ...]
                               [--json results.json] [--file-timeout 300] [--work /tmp/ripple-iii-suites]

``/path/to/iii`` is a checkout of ``iii-hq/iii`` at tag ``iii/v0.22.1`` (at least ``sdk/``, the root
``package.json``/``pnpm-lock.yaml``/``pnpm-workspace.yaml``); ``--todo-app`` a checkout of ``iii-hq/todo-app``. Nothing
of theirs is copied here: this script only starts ripple, points their code at ripple's ports the way their CI points
it at an engine (``III_URL``, ``III_HTTP_URL``), and counts what passes.

* ``node``: ``sdk/packages/node/iii/tests/*.test.ts`` with vitest, one file at a time (as iii's CI, one engine for
  the whole suite). Dependencies are installed with ``pnpm install --frozen-lockfile --filter iii-sdk...`` when
  missing.
* ``python``: the engine-backed files of ``sdk/packages/python/iii/tests`` (those that use the ``iii_client``
  fixture or the engine URL) with pytest, in a venv under ``--work`` holding the SDK from the checkout.
* ``todo``: ``apps/api`` of the todo-app, unmodified (``tsx src/main.ts``), driven by a stand-in for its browser
  worker: the ``todos::*`` calls and the ``stream`` trigger on the ``todo`` stream that ``use-todos.ts`` makes.
* ``example``: ``sdk/packages/python/iii-example`` (``python -m src.main``), driven over its HTTP routes.

The RBAC worker port that iii's CI configures (the second ``iii-worker-manager`` of ``sdk/fixtures/config-test.yaml``)
is ripple's ``--iii-rbac-port``: its rules are read from that file of the checkout and handed to ``ripple serve`` as
``--iii-rbac-*`` flags, and ``III_RBAC_WORKER_URL`` points at it. The bridge engine is not started: its URL points at
a closed port, so those tests fail unless they only need the main engine. Results are printed per file (and written
with ``--json``); docs/iii.md records them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PNPM = "pnpm@10.19.0"  # the iii repository's packageManager


# ---- results ------------------------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    status: str  # passed | failed | error | skipped | timeout
    message: str = ""


@dataclass
class FileResult:
    suite: str
    file: str
    cases: list[Case] = field(default_factory=list)
    note: str = ""

    def count(self, status: str) -> int:
        return sum(1 for c in self.cases if c.status == status)


def summary_line(result: FileResult) -> str:
    total = len(result.cases)
    parts = [f"{result.count('passed')}/{total} passed"]
    for status in ("failed", "error", "skipped", "timeout"):
        if result.count(status):
            parts.append(f"{result.count(status)} {status}")
    note = f"  ({result.note})" if result.note else ""
    return f"  {result.file:48} {', '.join(parts)}{note}"


# ---- processes ----------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Ripple:
    proc: subprocess.Popen[str]
    worker_port: int
    http_port: int
    stream_port: int
    log_path: Path
    rbac_port: int | None = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.worker_port}"

    @property
    def rbac_url(self) -> str:
        return f"ws://127.0.0.1:{self.rbac_port}" if self.rbac_port is not None else closed_port_url()

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


def rbac_flags(iii: Path) -> list[str]:
    """The ``--iii-rbac-*`` flags for the RBAC listener of the checkout's test engine config (none when it has
    none): the same auth function, hooks, middleware and ``expose_functions``, read from the file, not copied."""
    import yaml  # PyYAML (ripple's dev extra brings it)

    config = iii / "sdk" / "fixtures" / "config-test.yaml"
    if not config.exists():
        return []
    for worker in yaml.safe_load(config.read_text()).get("workers", []):
        settings = worker.get("config") or {}
        rbac = settings.get("rbac")
        if worker.get("name") != "iii-worker-manager" or not rbac:
            continue
        flags = []
        for option, value in (
            ("--iii-rbac-auth-function", rbac.get("auth_function_id")),
            ("--iii-rbac-middleware", settings.get("middleware_function_id")),
            ("--iii-rbac-on-function-registration", rbac.get("on_function_registration_function_id")),
            ("--iii-rbac-on-trigger-registration", rbac.get("on_trigger_registration_function_id")),
            ("--iii-rbac-on-trigger-type-registration", rbac.get("on_trigger_type_registration_function_id")),
        ):
            if value:
                flags += [option, str(value)]
        for entry in rbac.get("expose_functions") or []:
            flags += ["--iii-rbac-expose", entry if isinstance(entry, str) else json.dumps(entry)]
        return flags
    return []


@contextlib.contextmanager
def ripple_server(work: Path, name: str, rbac: list[str] | None = None) -> Iterator[Ripple]:
    """``ripple serve --iii`` on free ports with a fresh database (and, given ``rbac`` flags, the RBAC port);
    stopped (SIGTERM, then SIGKILL) on exit."""
    run = work / f"ripple-{name}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    ports = [free_port() for _ in range(5)]
    argv = [
        sys.executable, "-m", "ripple", "serve", str(run / "ripple.db"), "--port", str(ports[0]), "--iii",
        "--iii-worker-port", str(ports[1]), "--iii-http-port", str(ports[2]), "--iii-stream-port", str(ports[3]),
    ]  # fmt: skip
    if rbac:
        argv += ["--iii-rbac-port", str(ports[4]), *rbac]
    log_path = run / "serve.log"
    out = log_path.open("w")
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True, cwd=run)
    try:
        deadline = time.monotonic() + 60
        while "ripple iii" not in log_path.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ripple serve did not start:\n{log_path.read_text()}")
            time.sleep(0.1)  # sleep-ok: waiting for a child's startup line in a benchmark
        yield Ripple(proc, ports[1], ports[2], ports[3], log_path, ports[4] if rbac else None)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> None:
    print("  $", " ".join(argv), f"(in {cwd})", flush=True)
    done = subprocess.run(argv, cwd=cwd, env=env, timeout=timeout, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")


def run_capture(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[str, bool]:
    """Run a child in its own process group; returns (output, timed_out). The whole group is killed afterwards, so
    no worker process it forked (vitest's pool, an SDK's helper) outlives it."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    timed_out = False
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    return output or "", timed_out


def closed_port_url() -> str:
    """A ``ws://`` URL nothing listens on (the bridge engine of iii's CI, which ripple does not run)."""
    return f"ws://127.0.0.1:{free_port()}"


# ---- node ---------------------------------------------------------------------------------------------------------


STAND_IN_ASSET = "sdk/test-assets/handbook.pdf"  # 1.3 MB PDF kept in Git LFS; public snapshots may lack it


def stand_in_asset(iii: Path) -> None:
    """The upload/download tests only compare bytes: give them a stand-in when the checkout lacks the PDF."""
    path = iii / STAND_IN_ASSET
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 5000 + b"\n%%EOF\n")
        print(f"  note: {STAND_IN_ASSET} was missing; wrote a stand-in of {path.stat().st_size} bytes", flush=True)


def setup_node(iii: Path) -> Path:
    stand_in_asset(iii)
    package = iii / "sdk" / "packages" / "node" / "iii"
    if not (package / "node_modules" / "vitest").exists():
        run(["npx", "--yes", PNPM, "install", "--frozen-lockfile", "--filter", "iii-sdk..."], iii)
    # As iii's CI: the helper packages are imported from their build output.
    for helper in ("observability", "helpers"):
        if not (iii / "sdk" / "packages" / "node" / helper / "dist").exists():
            run(["npx", "--yes", PNPM, "--filter", f"@iii-dev/{helper}", "build"], iii)
    return package


def parse_vitest_json(path: Path) -> list[Case]:
    data = json.loads(path.read_text())
    cases = []
    for file in data.get("testResults", []):
        for test in file.get("assertionResults", []):
            status = {"passed": "passed", "failed": "failed"}.get(test["status"], "skipped")
            message = " ".join(test.get("failureMessages") or [])[:300]
            cases.append(Case(test["fullName"], status, first_line(message)))
        if not file.get("assertionResults") and file.get("message"):
            cases.append(Case("(file)", "error", first_line(file["message"])))
    return cases


DECLARED = re.compile(r"^\s*(?:it|test)(?:\.\w+)?\(", re.M)


def declared_tests(path: Path) -> int:
    """How many tests a vitest file declares (``it(`` / ``test(`` at the start of a line)."""
    return len(DECLARED.findall(path.read_text()))


VERBOSE_LINE = re.compile(r"^\s*([\u2713\u00d7\u2193])\s+(.+?)(?:\s+\d+ms)?$")  # ✓ passed, x failed, ↓ skipped


def parse_vitest_verbose(text: str) -> list[Case]:
    """What a timed-out run had reported so far (the JSON report is only written at the end)."""
    cases = []
    for line in text.splitlines():
        match = VERBOSE_LINE.match(line)
        if match:
            status = {"\u2713": "passed", "\u00d7": "failed", "\u2193": "skipped"}[match.group(1)]
            cases.append(Case(match.group(2), status))
    return cases


def run_node(iii: Path, work: Path, timeout: float, only: list[str]) -> list[FileResult]:
    package = setup_node(iii)
    files = sorted(p.name for p in (package / "tests").glob("*.test.ts"))
    if only:
        files = [f for f in files if any(o in f for o in only)]
    results = []
    with ripple_server(work, "node", rbac_flags(iii)) as ripple:
        env = dict(
            os.environ,
            III_URL=ripple.ws_url,
            III_HTTP_URL=ripple.http_url,
            III_BRIDGE_WS_URL=closed_port_url(),
            III_RBAC_WORKER_URL=ripple.rbac_url,
        )
        for name in files:
            report = work / f"vitest-{name}.json"
            report.unlink(missing_ok=True)
            argv = ["npx", "vitest", "run", f"tests/{name}", "--reporter=verbose", "--reporter=json",
                    f"--outputFile.json={report}", "--coverage.enabled=false"]  # fmt: skip
            started = time.monotonic()
            output, timed_out = run_capture(argv, package, env, timeout)
            result = FileResult("node", name, note=f"{time.monotonic() - started:.0f}s")
            if report.exists():
                result.cases = parse_vitest_json(report)
            else:  # timed out: what the verbose reporter printed, and the file's other tests as not run
                status = "timeout" if timed_out else "error"
                result.cases = parse_vitest_verbose(output)
                missing = declared_tests(package / "tests" / name) - len(result.cases)
                result.cases += [Case(f"(not run {i + 1})", status, first_line(output[-300:])) for i in range(missing)]
            (work / f"vitest-{name}.log").write_text(output)
            results.append(result)
            print(summary_line(result), flush=True)
    return results


# ---- python -------------------------------------------------------------------------------------------------------

ENGINE_MARKERS = ("iii_client", "engine_http_url", "ENGINE_WS_URL", "III_URL")


def setup_python(iii: Path, work: Path) -> Path:
    stand_in_asset(iii)
    venv = work / "py"
    python = venv / "bin" / "python"
    if not python.exists():
        run([sys.executable, "-m", "venv", str(venv)], work)
        packages = iii / "sdk" / "packages" / "python"
        run([str(python), "-m", "pip", "install", "--quiet", "-e", str(packages / "helpers"),
             "-e", f"{packages / 'iii'}[dev]", "opentelemetry-sdk"], work)  # fmt: skip
    return python


def engine_backed(path: Path) -> bool:
    text = path.read_text()
    return path.name != "conftest.py" and any(marker in text for marker in ENGINE_MARKERS)


def parse_junit(path: Path) -> list[Case]:
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        status, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                status = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
                message = first_line(child.get("message") or child.text or "")
                break
        cases.append(Case(name, status, message))
    return cases


def run_python(iii: Path, work: Path, timeout: float, only: list[str]) -> list[FileResult]:
    python = setup_python(iii, work)
    package = iii / "sdk" / "packages" / "python" / "iii"
    files = sorted(p.name for p in (package / "tests").glob("test_*.py") if engine_backed(p))
    if only:
        files = [f for f in files if any(o in f for o in only)]
    results = []
    with ripple_server(work, "python", rbac_flags(iii)) as ripple:
        env = dict(
            os.environ,
            III_URL=ripple.ws_url,
            III_HTTP_URL=ripple.http_url,
            III_RBAC_WORKER_URL=ripple.rbac_url,
            III_BRIDGE_WS_URL=closed_port_url(),
        )
        env.pop("PYTHONPATH", None)
        for name in files:
            report = work / f"pytest-{name}.xml"
            report.unlink(missing_ok=True)
            argv = [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-cov", "-o", "addopts=",
                    f"--junitxml={report}", f"tests/{name}"]  # fmt: skip
            started = time.monotonic()
            output, timed_out = run_capture(argv, package, env, timeout)
            result = FileResult("python", name, note=f"{time.monotonic() - started:.0f}s")
            if report.exists():
                result.cases = parse_junit(report)
            else:  # timed out or crashed: every test the file holds counts as not passed
                status = "timeout" if timed_out else "error"
                collect = [*argv[:3], "-o", "addopts=", "-p", "no:cacheprovider", "--collect-only", "-q"]
                listed, _ = run_capture([*collect, f"tests/{name}"], package, env, 60)
                names = [line for line in listed.splitlines() if "::" in line]
                result.cases = [Case(n, status, first_line(output[-300:])) for n in names] or [
                    Case("(file)", status, first_line(output[-300:]))
                ]
            (work / f"pytest-{name}.log").write_text(output)
            results.append(result)
            print(summary_line(result), flush=True)
    return results


# ---- apps: shared helpers -----------------------------------------------------------------------------------------


class Checks:
    """Named pass/fail steps of an app run."""

    def __init__(self, suite: str, file: str) -> None:
        self.result = FileResult(suite, file)

    def check(self, name: str, ok: bool, detail: Any = "") -> bool:
        self.result.cases.append(Case(name, "passed" if ok else "failed", "" if ok else first_line(str(detail))))
        return ok


def http_json(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=35) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


def wait_for(predicate: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)  # sleep-ok: polling an app's HTTP routes / output in a benchmark
    return bool(predicate())


# ---- todo-app -----------------------------------------------------------------------------------------------------

# A stand-in for the todo-app's browser worker (apps/website/src/hooks/use-todos.ts): the same calls and the same
# `stream` trigger, written here for ripple; it prints one JSON line per step.
TODO_DRIVER = textwrap.dedent(
    """
    import { registerWorker } from 'iii-sdk'
    const iii = registerWorker(process.env.III_URL)
    const changes = []
    const call = (function_id, payload) => iii.trigger({ function_id, payload })
    const pause = () => new Promise(r => setTimeout(r, 100))
    const state = {}
    async function step(name, body) {
      try {
        const [ok, detail] = await body()
        console.log(JSON.stringify({ step: name, ok, detail }))
      } catch (err) {
        console.log(JSON.stringify({ step: name, ok: false, detail: String(err && err.message || err) }))
      }
    }
    const fn = iii.registerFunction('ui::on-todo-change', async (input) => { changes.push(input); return {} })
    iii.registerTrigger({ type: 'stream', function_id: fn.id, config: { stream_name: 'todo', group_id: 'todos' } })
    for (let i = 0; i < 100; i++) {  // until the api worker has registered todos::list
      try { await call('todos::list', {}); break } catch { await pause() }
    }
    await step('list (empty)', async () => {
      const r = await call('todos::list', {})
      return [Array.isArray(r.items) && r.items.length === 0, r]
    })
    await step('create', async () => {
      const a = state.a = await call('todos::create', { title: 'milk' })
      state.b = await call('todos::create', { title: 'bread' })
      return [a && a.title === 'milk' && a.completed === false && typeof a.id === 'string', a]
    })
    await step('list (two, in order)', async () => {
      const r = await call('todos::list', {})
      return [r.items.map(t => t.title).join(',') === 'milk,bread', r]
    })
    await step('get', async () => {
      const r = await call('todos::get', { id: state.a.id })
      return [r && r.id === state.a.id, r]
    })
    await step('toggle', async () => {
      const r = await call('todos::toggle', { id: state.a.id })
      return [r && r.completed === true && r.title === 'milk', r]
    })
    await step('delete', async () => {
      const r = await call('todos::delete', { id: state.b.id })
      return [r && r.deleted === true, r]
    })
    await step('get (deleted)', async () => {
      const r = await call('todos::get', { id: state.b.id })
      return [r === null, r]
    })
    await step('delete (missing)', async () => {
      const r = await call('todos::delete', { id: 'nope' })
      return [r && r.deleted === false, r]
    })
    await step('stream trigger: create, create, update, delete', async () => {
      for (let i = 0; i < 50 && changes.length < 4; i++) await pause()
      return [changes.map(c => c.event && c.event.type).join(',') === 'create,create,update,delete', changes]
    })
    await iii.shutdown()
    process.exit(0)
    """
)


# The todo-app's lockfile pins iii-sdk 0.11.0-next.5, which npm no longer serves (404); 0.11.6 is the newest release
# of that line (same API: registerWorker, Logger, iii-sdk/stream). tsx runs the TypeScript as the app's devDependency.
TODO_SDK = "iii-sdk@0.11.6"


def setup_todo(app: Path, work: Path) -> Path:
    """Install the app's runtime dependencies next to it (``apps/api/node_modules``, a link to ``--work``)."""
    api = app / "apps" / "api"
    deps = work / "todo-deps"
    if not (deps / "node_modules" / "iii-sdk").exists():
        deps.mkdir(parents=True, exist_ok=True)
        (deps / "package.json").write_text('{"name": "todo-deps", "private": true, "type": "module"}')
        run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", TODO_SDK, "tsx@4"], deps)
    modules = api / "node_modules"
    if not modules.exists():
        modules.symlink_to(deps / "node_modules")
    return api


def run_todo(app: Path, work: Path) -> list[FileResult]:
    api = setup_todo(app, work)
    checks = Checks("todo-app", "apps/api")
    driver_dir = work / "todo-driver"
    shutil.rmtree(driver_dir, ignore_errors=True)
    driver_dir.mkdir(parents=True)
    (driver_dir / "node_modules").symlink_to(api / "node_modules")
    (driver_dir / "package.json").write_text('{"type": "module"}')
    (driver_dir / "driver.mjs").write_text(TODO_DRIVER)
    with ripple_server(work, "todo") as ripple:
        env = dict(os.environ, III_URL=ripple.ws_url)
        log = (work / "todo-api.log").open("w")
        tsx = api / "node_modules" / ".bin" / "tsx"
        api_proc = subprocess.Popen([str(tsx), "src/main.ts"], cwd=api, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            output, timed_out = run_capture(["node", "driver.mjs"], driver_dir, env, 120)
            if timed_out:
                checks.check("driver finished", False, "timed out")
            for line in output.splitlines():
                with contextlib.suppress(ValueError):
                    step = json.loads(line)
                    checks.check(step["step"], bool(step["ok"]), json.dumps(step.get("detail"))[:300])
            checks.check("api worker still running", api_proc.poll() is None, (work / "todo-api.log").read_text())
        finally:
            api_proc.terminate()
            try:
                api_proc.wait(10)
            except subprocess.TimeoutExpired:
                api_proc.kill()
            log.close()
    print(summary_line(checks.result), flush=True)
    return [checks.result]


# ---- python iii-example -------------------------------------------------------------------------------------------


def run_example(iii: Path, work: Path) -> list[FileResult]:
    python = setup_python(iii, work)
    example = iii / "sdk" / "packages" / "python" / "iii-example"
    checks = Checks("iii-example", "sdk/packages/python/iii-example")
    with ripple_server(work, "example") as ripple:
        env = dict(os.environ, III_URL=ripple.ws_url, OTEL_ENABLED="false", PYTHONUNBUFFERED="1")
        env.pop("PYTHONPATH", None)
        log_path = work / "iii-example.log"
        log = log_path.open("w")
        proc = subprocess.Popen(
            [str(python), "-m", "src.main"], cwd=example, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        base = ripple.http_url
        try:
            routed = wait_for(lambda: http_json("GET", f"{base}/state/nothing")[0] != 404, 30)
            checks.check("routes registered", routed, log_path.read_text()[-300:])
            catalog = wait_for(lambda: "Found" in log_path.read_text(), 10) and "Traceback" not in log_path.read_text()
            checks.check("trigger type catalog printed", catalog, log_path.read_text()[-300:])
            checks.check(
                "functions-available fired",
                wait_for(lambda: "Functions available" in log_path.read_text(), 10),
                log_path.read_text()[-300:],
            )
            status, created = http_json("POST", f"{base}/todo", {"description": "milk", "dueDate": "2026-01-01"})
            new = created.get("new_value") if isinstance(created, dict) else None
            checks.check("POST /todo → 201", status == 201 and isinstance(new, dict), (status, created))
            todo_id = new["id"] if isinstance(new, dict) else "missing"
            status, body = http_json("POST", f"{base}/todo", {})
            checks.check("POST /todo without description → 400", status == 400, (status, body))
            status, body = http_json("PUT", f"{base}/todo/{todo_id}", {"description": "oat milk"})
            checks.check("PUT /todo/:id → 200", status == 200, (status, body))
            status, body = http_json("PUT", f"{base}/todo/nope", {"description": "x"})
            checks.check("PUT /todo/missing → 404", status == 404, (status, body))
            status, body = http_json("DELETE", f"{base}/todo", {"todoId": todo_id})
            checks.check("DELETE /todo → 200", status == 200 and body == {"success": True}, (status, body))
            status, stored = http_json("POST", f"{base}/state", {"description": "state todo"})
            key = stored.get("new_value", {}).get("id") if isinstance(stored, dict) else None
            checks.check("POST /state → 201", status == 201 and key is not None, (status, stored))
            status, body = http_json("GET", f"{base}/state/{key}")
            ok = status == 200 and isinstance(body, dict) and body.get("description") == "state todo"
            checks.check("GET /state/:id → 200", ok, (status, body))
            status, body = http_json("GET", f"{base}/error-test")
            checks.check("GET /error-test → 500", status == 500, (status, body))
            checks.check("worker still running", proc.poll() is None, log_path.read_text()[-300:])
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    print(summary_line(checks.result), flush=True)
    return [checks.result]


# ---- main ---------------------------------------------------------------------------------------------------------


def first_line(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text).strip()
    return text.splitlines()[0][:240] if text else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("iii", type=Path, help="checkout of iii-hq/iii at iii/v0.22.1")
    parser.add_argument("--todo-app", type=Path, help="checkout of iii-hq/todo-app")
    parser.add_argument("--suite", action="append", choices=["node", "python", "todo", "example"])
    parser.add_argument("--only", action="append", default=[], help="run only test files whose name contains this")
    parser.add_argument("--file-timeout", type=float, default=300.0)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "ripple-iii-suites")
    parser.add_argument("--json", type=Path, help="write every case's result here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop ripple and the children we started
    iii = args.iii.resolve()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    suites = args.suite or ["node", "python", "todo", "example"]
    results: list[FileResult] = []
    for suite in suites:
        print(f"{suite}:", flush=True)
        if suite == "node":
            results += run_node(iii, work, args.file_timeout, args.only)
        elif suite == "python":
            results += run_python(iii, work, args.file_timeout, args.only)
        elif suite == "todo":
            if args.todo_app is None:
                print("  skipped: no --todo-app")
                continue
            results += run_todo(args.todo_app.resolve(), work)
        else:
            results += run_example(iii, work)
    print("\ntotals:")
    for suite in dict.fromkeys(r.suite for r in results):
        mine = [r for r in results if r.suite == suite]
        passed = sum(r.count("passed") for r in mine)
        total = sum(len(r.cases) for r in mine)
        print(f"  {suite:12} {passed}/{total} passed")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))


if __name__ == "__main__":
    main()
