"""The offline tool, each command through a subprocess on real files (DESIGN §10)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from ripple import IncrementOp, Store
from ripple.migrations import LATEST_VERSION
from tests.conftest import RIPPLE, ripple_env


def ripple(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*RIPPLE, *args], input=stdin, capture_output=True, env=ripple_env(), cwd=cwd,
                          timeout=120)


def lines(done: subprocess.CompletedProcess[bytes]) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in done.stdout.splitlines()]


async def fill(path: Path) -> int:
    async with Store.open(path) as store:
        for i in range(30):
            await store.set("todos", f"t{i % 7}", {"title": f"todo {i}", "n": i})
            if i % 5 == 0:
                await store.update("metrics", "global", [IncrementOp("total", 1)])
            if i % 9 == 0:
                await store.delete("todos", f"t{i % 7}")
        await store.send("live", "all", "ping", {"i": 1})
        await store.set("users", "user/1", {"name": "ü"})
        return store.head


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    asyncio.run(fill(path))
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_log_and_filters(db: Path) -> None:
    events = lines(ripple("log", "--db", str(db)))
    assert [e["offset"] for e in events] == list(range(1, len(events) + 1))
    assert set(events[0]) == {"offset", "ts", "kind", "scope", "key", "op", "event_type", "version", "old_value",
                              "new_value", "meta"}
    todos = lines(ripple("log", "--db", str(db), "--scope", "todos", "--after", "5"))
    assert todos and all(e["scope"] == "todos" and e["offset"] > 5 for e in todos)
    stream = lines(ripple("log", "--db", str(db), "--kind", "stream"))
    assert [(e["scope"], e["key"], e["event_type"]) for e in stream] == [("live", "all", "ping")]
    by_key = lines(ripple("log", "--db", str(db), "--key", "user/1"))
    assert [e["new_value"] for e in by_key] == [{"name": "ü"}]


def test_env_var_names_the_database(db: Path, tmp_path: Path) -> None:
    done = subprocess.run([*RIPPLE, "stats"], capture_output=True, env=ripple_env(RIPPLE_DB=str(db)), timeout=60)
    assert done.returncode == 0 and json.loads(done.stdout)["head"] > 0


def test_get_now_and_at(db: Path) -> None:
    done = ripple("get", "--db", str(db), "users", "user/1")
    assert done.returncode == 0 and json.loads(done.stdout) == {"name": "ü"}
    assert json.loads(ripple("get", "--db", str(db), "todos", "t0", "--at", "1").stdout) == {"title": "todo 0", "n": 0}
    missing = ripple("get", "--db", str(db), "todos", "nope")
    assert missing.returncode == 1 and missing.stderr.decode().count("\n") == 1
    scope = lines(ripple("get", "--db", str(db), "todos"))
    assert [e["key"] for e in scope] and set(scope[0]) == {"key", "value", "version", "offset"}


def test_verify_ok_and_state_hash(db: Path) -> None:
    done = ripple("verify", "--db", str(db))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout.decode()
    assert out.startswith("ok: ") and "state-hash: " in out


def test_state_hash_is_the_documented_one(db: Path) -> None:
    out = ripple("verify", "--db", str(db)).stdout.decode()
    got = out.split("state-hash: ")[1].strip()
    conn = sqlite3.connect(db)
    rows = sorted(conn.execute("SELECT scope, key, value FROM state").fetchall(), key=lambda r: (r[0], r[1]))
    conn.close()
    text = "\n".join(f"{s}\t{k}\t{json.dumps(json.loads(v), sort_keys=True, separators=(',', ':'), ensure_ascii=False)}"
                     for s, k, v in rows)
    assert got == hashlib.sha256(text.encode()).hexdigest()


def corrupt(db: Path, sql: str, params: tuple[object, ...] = ()) -> None:
    conn = sqlite3.connect(db)
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def test_verify_names_a_changed_event(db: Path) -> None:
    conn = sqlite3.connect(db)
    # an event of t1 that has a later event of the same key
    seq, nxt = conn.execute("SELECT a.seq, min(b.seq) FROM events a JOIN events b ON a.scope = b.scope "
                            "AND a.key = b.key AND b.seq > a.seq WHERE a.key = 't1' GROUP BY a.seq "
                            "ORDER BY a.seq LIMIT 1").fetchone()
    conn.close()
    corrupt(db, "UPDATE events SET new_value = replace(new_value, 'todo', 'TODO') WHERE seq = ?", (seq,))
    done = ripple("verify", "--db", str(db))
    assert done.returncode == 1
    out = done.stdout.decode()
    assert f"offset {nxt}" in out and f"offset {seq}" in out


def test_verify_names_a_gap(db: Path) -> None:
    corrupt(db, "DELETE FROM events WHERE seq = 7")
    done = ripple("verify", "--db", str(db))
    assert done.returncode == 1 and "offset 7 is missing" in done.stdout.decode()


def test_verify_names_an_edited_state_row(db: Path) -> None:
    corrupt(db, "UPDATE state SET value = '{\"title\":\"forged\"}' WHERE key = 'user/1'")
    done = ripple("verify", "--db", str(db))
    head = int(json.loads(ripple("stats", "--db", str(db)).stdout)["head"])
    assert done.returncode == 1 and "users/user/1" in done.stdout.decode() and f"offset {head}" in done.stdout.decode()


def test_verify_reports_a_corrupt_page(db: Path) -> None:
    conn = sqlite3.connect(db)
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events_scope_key_seq'").fetchone()[0]
    conn.close()
    data = bytearray(db.read_bytes())
    start = (root - 1) * page_size
    data[start + 8 : start + 200] = b"\xff" * 192
    db.write_bytes(bytes(data))
    done = ripple("verify", "--db", str(db))
    assert done.returncode == 1 and "[integrity]" in done.stdout.decode()


def test_export_import_gives_the_same_state_hash(db: Path, tmp_path: Path) -> None:
    exported = ripple("export", "--db", str(db))
    assert exported.returncode == 0
    copy = tmp_path / "copy.db"
    done = ripple("import", "--db", str(copy), stdin=exported.stdout)
    assert done.returncode == 0, done.stderr
    h1 = ripple("verify", "--db", str(db)).stdout.decode().split("state-hash: ")[1]
    h2 = ripple("verify", "--db", str(copy)).stdout.decode().split("state-hash: ")[1]
    assert h1 == h2
    assert ripple("export", "--db", str(copy)).stdout == exported.stdout


def test_import_append_must_continue_offsets(db: Path, tmp_path: Path) -> None:
    all_lines = ripple("export", "--db", str(db)).stdout.splitlines(keepends=True)
    copy = tmp_path / "copy.db"
    assert ripple("import", "--db", str(copy), stdin=b"".join(all_lines[:10])).returncode == 0
    refused = ripple("import", "--db", str(copy), stdin=b"".join(all_lines[10:]))
    assert refused.returncode == 2 and b"--append" in refused.stderr
    gap = ripple("import", "--db", str(copy), "--append", stdin=b"".join(all_lines[11:]))
    assert gap.returncode == 2 and b"line 1" in gap.stderr
    assert ripple("import", "--db", str(copy), "--append", stdin=b"".join(all_lines[10:])).returncode == 0
    assert ripple("verify", "--db", str(copy)).returncode == 0


@pytest.mark.parametrize("bad_line", [
    b"not json\n",
    b'{"offset": 1}\n',
    b'{"offset":1,"ts":0,"kind":"state","scope":"a/b","key":"k","op":"set","event_type":"created","version":1,'
    b'"new_value":1}\n',
    b'{"offset":1,"ts":0,"kind":"state","scope":"s","key":"k","op":"set","event_type":"updated","version":2,'
    b'"new_value":1}\n',
])
def test_import_names_the_bad_line_and_writes_nothing(db: Path, tmp_path: Path, bad_line: bytes) -> None:
    good = ripple("export", "--db", str(db)).stdout.splitlines(keepends=True)[:3]
    copy = tmp_path / "new.db"
    fixed = bad_line.replace(b'"offset":1,', b'"offset":4,').replace(b'"offset": 1}', b'"offset": 4}')
    done = ripple("import", "--db", str(copy), stdin=b"".join(good) + fixed)
    assert done.returncode == 2 and b"line 4" in done.stderr and done.stderr.count(b"\n") == 1
    assert not copy.exists() and not Path(f"{copy}.lock").exists()
    before = digest(db)
    done = ripple("import", "--db", str(db), "--append", stdin=fixed.replace(b'"offset":4', b'"offset":999'))
    assert done.returncode == 2 and digest(db) == before


def test_replay_equals_get_at_for_every_key(db: Path, tmp_path: Path) -> None:
    to = 20
    out = tmp_path / "at20.db"
    done = ripple("replay", "--db", str(db), "--to", str(to), "--into", str(out))
    assert done.returncode == 0, done.stderr
    assert json.loads(ripple("stats", "--db", str(out)).stdout)["head"] == to
    conn = sqlite3.connect(db)
    keys = conn.execute("SELECT DISTINCT scope, key FROM events WHERE kind = 'state' AND seq <= ?", (to,)).fetchall()
    conn.close()
    for scope, key in keys:
        then = ripple("get", "--db", str(db), scope, key, "--at", str(to))
        now = ripple("get", "--db", str(out), scope, key)
        assert (then.returncode, then.stdout) == (now.returncode, now.stdout), (scope, key)
    assert ripple("verify", "--db", str(out)).returncode == 0
    again = ripple("replay", "--db", str(db), "--to", "5", "--into", str(out))
    assert again.returncode == 2 and b"already exists" in again.stderr


def test_stats(db: Path) -> None:
    stats = json.loads(ripple("stats", "--db", str(db)).stdout)
    assert stats["schema_version"] == LATEST_VERSION and stats["head"] > 30
    assert stats["events"]["state:todos"]["set"] == 30 and stats["events"]["stream:live"]["send"] == 1


def test_read_only_commands_work_beside_a_live_writer(db: Path) -> None:
    async def main() -> None:
        async with Store.open(db) as store:
            await store.set("live", "k", 1)
            for args in (["log"], ["get", "live", "k"], ["stats"], ["verify"], ["export"]):
                done = await asyncio.to_thread(ripple, *args, "--db", str(db))
                assert done.returncode == 0, (args, done.stderr)
            locked = await asyncio.to_thread(ripple, "import", "--db", str(db), "--append", stdin=b"")
            assert locked.returncode == 2 and str(__import__("os").getpid()).encode() in locked.stderr
    asyncio.run(main())


@pytest.mark.parametrize("args", [
    ["log", "--db", "{missing}"],
    ["verify", "--db", "{notsqlite}"],
    ["stats", "--db", "{foreign}"],
    ["get", "--db", "{newer}", "s", "k"],
    ["get", "--db", "{db}", "s", "k", "--at", "-1"],
    ["get", "--db", "{db}", "s", "k", "--at", "99999"],
    ["log", "--db", "{db}", "--after", "abc"],
    ["log", "--db", "{db}", "--kind", "weird"],
    ["get", "--db", "{db}", "bad/scope", "k"],
    ["replay", "--db", "{db}", "--to", "99999", "--into", "{out}"],
    ["nonsense"],
])
def test_bad_input_is_one_line_and_exit_2(db: Path, tmp_path: Path, args: list[str]) -> None:
    notsqlite = tmp_path / "notes.txt"
    notsqlite.write_text("hello\n" * 100)
    foreign = tmp_path / "foreign.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    newer = tmp_path / "newer.db"
    newer.write_bytes(db.read_bytes())
    conn = sqlite3.connect(newer)
    conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    conn.close()
    paths = {"missing": tmp_path / "missing.db", "notsqlite": notsqlite, "foreign": foreign, "newer": newer,
             "db": db, "out": tmp_path / "out.db"}
    before = {name: digest(p) for name, p in paths.items() if p.exists()}
    done = ripple(*[a.format(**{k: str(v) for k, v in paths.items()}) for a in args])
    assert done.returncode == 2, done
    assert done.stderr.count(b"\n") == 1 and b"Traceback" not in done.stderr, done.stderr
    assert {name: digest(p) for name, p in paths.items() if p.exists()} == before
    assert not (tmp_path / "missing.db").exists() and not (tmp_path / "out.db").exists()


def test_every_command_has_help_with_an_example() -> None:
    for command in ("log", "get", "replay", "rebuild", "verify", "export", "import", "stats"):
        done = ripple(command, "--help")
        assert done.returncode == 0 and b"ripple " + command.encode() in done.stdout, command
        assert b"--db" in done.stdout


# ---- projections ---------------------------------------------------------------------------------------------

TODO_APP = "examples.todo:setup"


async def fill_todos(path: Path, n: int = 40) -> None:
    import examples.todo as todo

    async with Store.open(path) as store:
        todo.setup(store)
        for i in range(n):
            await store.set("todos", f"t{i % 9}", {"id": f"t{i % 9}", "title": "x", "completed": i % 3 == 0,
                                                   "created_at": "2026-01-01"})
            if i % 7 == 0:
                await store.delete("todos", f"t{i % 9}")
        await store.reactions.wait_idle("todo-metrics")


def projection_rows(path: Path, table_like: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE ?",
                                             (table_like,))]
        return sorted(row for t in tables for row in conn.execute(f'SELECT * FROM "{t}"'))
    finally:
        conn.close()


@pytest.fixture
def todo_db(tmp_path: Path) -> Path:
    path = tmp_path / "todo.db"
    asyncio.run(fill_todos(path))
    return path


def test_verify_with_app_checks_user_projections(todo_db: Path) -> None:
    done = ripple("verify", "--db", str(todo_db), "--app", TODO_APP, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stdout + done.stderr
    assert b"todo_stats" in done.stdout and b"metrics" in done.stdout


def test_verify_names_a_tampered_projection_row(todo_db: Path) -> None:
    conn = sqlite3.connect(todo_db)
    table = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'proj_metrics__%'"
                         ).fetchone()[0]
    conn.execute(f'UPDATE "{table}" SET creates = creates + 5')
    conn.commit()
    conn.close()
    done = ripple("verify", "--db", str(todo_db))
    assert done.returncode == 1 and b"[projection metrics]" in done.stdout, done.stdout


def test_rebuild_equals_incremental(todo_db: Path) -> None:
    before = projection_rows(todo_db, "%todo_stats%")
    metrics_before = projection_rows(todo_db, "%metrics%")
    done = ripple("rebuild", "--db", str(todo_db), "--app", TODO_APP, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(done.stdout)["rebuilt"]) == ["metrics", "todo_stats"]
    assert projection_rows(todo_db, "%todo_stats%") == before
    assert projection_rows(todo_db, "%metrics%") == metrics_before
    one = ripple("rebuild", "--db", str(todo_db), "metrics")
    assert one.returncode == 0 and json.loads(one.stdout)["rebuilt"] == ["metrics"]
    unknown = ripple("rebuild", "--db", str(todo_db), "nope")
    assert unknown.returncode == 2 and b"no projection named 'nope'" in unknown.stderr
    assert ripple("verify", "--db", str(todo_db), "--app", TODO_APP,
                  cwd=Path(__file__).resolve().parents[2]).returncode == 0


def test_rebuild_is_refused_beside_a_live_writer(todo_db: Path) -> None:
    async def main() -> None:
        async with Store.open(todo_db):
            done = await asyncio.to_thread(ripple, "rebuild", "--db", str(todo_db))
            assert done.returncode == 2 and str(__import__("os").getpid()).encode() in done.stderr
    asyncio.run(main())


def test_replay_rebuilds_projections(todo_db: Path, tmp_path: Path) -> None:
    out = tmp_path / "replayed.db"
    done = ripple("replay", "--db", str(todo_db), "--to", "30", "--into", str(out), "--app", TODO_APP,
                  cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    verified = ripple("verify", "--db", str(out), "--app", TODO_APP, cwd=Path(__file__).resolve().parents[2])
    assert verified.returncode == 0, verified.stdout
    assert projection_rows(out, "%todo_stats%")
