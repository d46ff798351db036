"""``--app`` takes a file path as well as a module name (DESIGN §6): ``path/to/app.py:setup`` or a package's
``__init__.py``, relative or absolute, from any directory — on serve, verify, rebuild and replay. A missing file,
a missing function or a module that fails to import is one line on stderr and exit 2.

The children here run without the checkout on ``PYTHONPATH`` (``ripple`` itself is installed), as a user's shell
would: that is what made ``--app examples.todo:setup`` work only from the checkout root.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest

from ripple import Store
from tests.conftest import RIPPLE, ROOT, SECOND
from tests.http.test_serve import serving, stop

TODO_INIT = ROOT / "examples" / "todo" / "__init__.py"

USER_APP = '''
from ripple import Projection


def fold(event, tables):
    return [(f"INSERT INTO {tables['seen']} (n) VALUES (1) ON CONFLICT (n) DO NOTHING", ())]


def setup(store):
    store.register_projection(Projection(name="seen", version=1, fold=fold, scopes=["s"],
                                         schema="CREATE TABLE {seen} (n INTEGER PRIMARY KEY);"))
'''


def bare_env() -> dict[str, str]:
    """The environment of a user's shell: ripple installed, the checkout not on the path."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def ripple(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RIPPLE, *args], cwd=cwd, env=bare_env(), capture_output=True, text=True, timeout=120)


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
    return done.stderr


async def some_writes(path: Path) -> None:
    async with Store.open(path) as store:
        for i in range(5):
            await store.set("s", f"k{i}", i)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    asyncio.run(some_writes(path))
    return path


def test_a_module_name_needs_the_checkout_on_the_path(db: Path, tmp_path: Path) -> None:
    """The old form still works where the module is importable; elsewhere it says what to do instead."""
    err = one_line(ripple("verify", "--db", str(db), "--app", "examples.todo:setup", cwd=tmp_path))
    assert "cannot import examples.todo" in err and "path/to/file.py:setup" in err, err
    assert ripple("verify", "--db", str(db), "--app", "examples.todo:setup", cwd=ROOT).returncode == 0


def test_a_package_init_file_works_from_anywhere(db: Path, tmp_path: Path) -> None:
    done = ripple("verify", "--db", str(db), "--app", f"{TODO_INIT}:setup", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "todo_stats" in done.stdout
    relative = os.path.relpath(TODO_INIT, tmp_path)
    assert ripple("verify", "--db", str(db), "--app", f"{relative}:setup", cwd=tmp_path).returncode == 0


def test_a_module_file_on_rebuild_replay_and_verify(db: Path, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "app.py").write_text(USER_APP)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    app = str(tmp_path / "mine" / "app.py") + ":setup"
    rebuilt = ripple("rebuild", "--db", str(db), "seen", "--app", app, cwd=elsewhere)
    assert rebuilt.returncode == 0 and json.loads(rebuilt.stdout) == {"rebuilt": ["seen"]}, rebuilt.stderr
    replayed = ripple("replay", "--db", str(db), "--to", "3", "--into", "out.db", "--app", "../mine/app.py:setup",
                      cwd=elsewhere)
    assert replayed.returncode == 0, replayed.stderr
    verified = ripple("verify", "--db", "out.db", "--app", "../mine/app.py:setup", cwd=elsewhere)
    assert verified.returncode == 0 and "seen" in verified.stdout, verified


async def test_serve_mounts_the_todo_example_by_file_path(tmp_path: Path) -> None:
    async with serving(tmp_path, "--port", "0", "--app", f"{TODO_INIT}:setup", env=bare_env()) as (proc, url, _):
        async with httpx.AsyncClient(base_url=url, timeout=10 * SECOND) as c:
            created = await c.post("/todos", json={"title": "milk"})
            assert created.status_code == 201, created.text
            assert [t["title"] for t in (await c.get("/todos")).json()] == ["milk"]
        code, _, err = await stop(proc)
    assert code == 0, err


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("nope/app.py:setup", "no such file"),
        ("mine/app.py:start", "has no attribute 'start'"),
        ("mine/broken.py:setup", "RuntimeError: boom"),
        ("mine/typo.py:setup", "SyntaxError"),
        ("mine/app.py", "expects module:function"),
        ("mine/notes.txt:setup", "not a Python file"),
        ("mine/:setup", "no __init__.py"),
        ("mine/raises.py:setup", "setup(store) raised ValueError: nope"),
    ],
)
def test_app_errors_are_one_line(db: Path, tmp_path: Path, spec: str, expected: str) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "app.py").write_text(USER_APP)
    (mine / "broken.py").write_text("raise RuntimeError('boom')\n")
    (mine / "typo.py").write_text("def setup(store)\n")
    (mine / "notes.txt").write_text("hello\n")
    (mine / "raises.py").write_text("def setup(store):\n    raise ValueError('nope')\n")
    for command in (["verify"], ["rebuild"], ["replay", "--to", "1", "--into", "out.db"]):
        err = one_line(ripple(*command, "--db", str(db), "--app", spec, cwd=tmp_path))
        assert expected in err and spec.split(":")[0] in err, (command, err)
    assert not (tmp_path / "out.db").exists()


def test_serve_refuses_a_broken_app_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("import no_such_module_here\n")
    err = one_line(ripple("serve", "--port", "0", "--app", "broken.py:setup", cwd=tmp_path))
    assert "broken" in err and "No module named 'no_such_module_here'" in err, err
