"""``ripple projections``: the projections recorded in a file (JSON, read-only, beside a live server), with
``--app`` to include the user's that the file does not record yet; and ``ripple verify`` names the user projections
it skipped because no ``--app`` registered them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from examples.todo import setup
from ripple import Store
from tests.conftest import RIPPLE, ROOT, ripple_env

TODO_APP = "examples.todo:setup"
OTHER_APP = '''
from ripple import Projection


def setup(store):
    store.register_projection(Projection(name="later", version=2, fold=lambda e, t: [], scopes=["s"],
                                         schema="CREATE TABLE {t} (n INTEGER);"))
'''


def ripple(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RIPPLE, *args], cwd=cwd, env=ripple_env(), capture_output=True, text=True, timeout=120)


async def todo_file(path: Path) -> None:
    store = Store(path)
    setup(store)
    async with store:
        for i in range(6):
            await store.set("todos", f"t{i}", {"id": f"t{i}", "title": "x", "completed": i % 2 == 0,
                                               "created_at": "2026-01-01"})
        await store.set("other", "k", 1)
        await asyncio.wait_for(store.reactions.wait_idle(), 30)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "todo.db"
    asyncio.run(todo_file(path))
    return path


def listed(done: subprocess.CompletedProcess[str]) -> dict[str, dict[str, Any]]:
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert set(body) == {"head", "projections"}
    return {p["name"]: p for p in body["projections"]}


def test_lists_what_the_file_records_read_only(db: Path) -> None:
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    found = listed(ripple("projections", "--db", str(db)))
    head = json.loads(ripple("stats", "--db", str(db)).stdout)["head"]
    assert set(found) == {"metrics", "todo_stats"}  # todo_stats is recorded: listed without --app
    for p in found.values():
        assert (p["status"], p["checkpoint"], p["lag"]) == ("ok", head, 0), p
    assert found["todo_stats"]["version"] == 2
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before


def test_app_adds_the_users_projections_not_recorded_yet(db: Path, tmp_path: Path) -> None:
    (tmp_path / "other.py").write_text(OTHER_APP)
    found = listed(ripple("projections", "--db", str(db), "--app", f"{tmp_path / 'other.py'}:setup"))
    assert set(found) == {"metrics", "todo_stats", "later"}
    assert found["later"] == {"name": "later", "version": 2, "status": "not_built", "checkpoint": 0,
                              "lag": found["metrics"]["checkpoint"]}


def test_stats_lists_the_same_projections(db: Path) -> None:
    stats = json.loads(ripple("stats", "--db", str(db)).stdout)
    assert {p["name"]: p for p in stats["projections"]} == listed(ripple("projections", "--db", str(db)))


async def test_works_beside_a_live_server(db: Path) -> None:
    store = Store(db)
    setup(store)
    async with store:
        await store.set("todos", "new", {"id": "new", "title": "y", "completed": False, "created_at": "2026"})
        done = await asyncio.to_thread(ripple, "projections", "--db", str(db))
        found = listed(done)
        assert found["todo_stats"]["checkpoint"] == store.head and found["todo_stats"]["lag"] == 0


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    done = ripple("projections", "--db", str(tmp_path / "missing.db"))
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "no such file" in done.stderr
    assert not (tmp_path / "missing.db").exists()


def test_verify_without_app_names_the_projections_it_skipped(db: Path) -> None:
    done = ripple("verify", "--db", str(db))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipped projections not loaded (pass --app): todo_stats" in done.stdout, done.stdout
    err = done.stderr.splitlines()
    assert len(err) == 1 and "todo_stats" in err[0] and "--app" in err[0], done.stderr
    with_app = ripple("verify", "--db", str(db), "--app", TODO_APP)
    assert with_app.returncode == 0 and with_app.stderr == "" and "skipped" not in with_app.stdout
