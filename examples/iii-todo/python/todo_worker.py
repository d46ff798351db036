"""The iii todo pattern as a Python worker (PyPI ``iii-sdk``), run unmodified against ``ripple serve --iii``.

It follows the engine's own shapes (``req["body"]``, ``{"status_code", "body"}``, ``stream::send`` with ``type``),
so it also runs under ``--iii-strict``::

    pip install iii-sdk==0.25.0
    III_URL=ws://127.0.0.1:49134 python todo_worker.py
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
import warnings
from datetime import UTC, datetime
from typing import Any

from iii import InitOptions, TriggerAction, register_worker

# register_trigger is deprecated in 0.25 in favour of observe(), which needs an engine feature ripple does not have;
# the SDK says to keep using it for the http and state trigger types.
warnings.filterwarnings("ignore", category=DeprecationWarning)

iii = register_worker(
    os.environ.get("III_URL") or os.environ.get("III_ENGINE_URL") or "ws://127.0.0.1:49134",
    InitOptions(worker_name="todo-worker-python"),
)
_ids = itertools.count(1)


def now() -> str:
    return datetime.now(UTC).isoformat()


async def call(function_id: str, payload: dict[str, Any]) -> Any:
    return await iii.trigger_async({"function_id": function_id, "payload": payload})


def reply(body: Any, status_code: int = 200) -> dict[str, Any]:
    return {"status_code": status_code, "body": body}


async def create(req: dict[str, Any]) -> dict[str, Any]:
    todo_id = f"todo-{int(time.time() * 1000)}-{next(_ids)}"
    body = req.get("body") or {}
    todo = {"_key": todo_id, "id": todo_id, "title": body.get("title"), "completed": False, "created_at": now()}
    await call("state::set", {"scope": "todos", "key": todo_id, "value": todo})
    return reply(todo, 201)


async def list_todos(req: dict[str, Any]) -> dict[str, Any]:
    return reply(await call("state::list", {"scope": "todos"}))


async def toggle(req: dict[str, Any]) -> dict[str, Any]:
    todo_id = (req.get("body") or {}).get("id")
    todo = await call("state::get", {"scope": "todos", "key": todo_id}) if todo_id else None
    if not todo:
        return reply({"error": f"Todo {todo_id} not found"}, 404)
    ops = [
        {"type": "set", "path": "completed", "value": not todo["completed"]},
        {"type": "set", "path": "updated_at", "value": now()},
    ]
    await call("state::update", {"scope": "todos", "key": todo_id, "ops": ops})
    return reply({"id": todo_id, "completed": not todo["completed"]})


async def delete(req: dict[str, Any]) -> dict[str, Any]:
    todo_id = (req.get("body") or {}).get("id")
    await call("state::delete", {"scope": "todos", "key": todo_id})
    return reply({"deleted": todo_id})


async def get_metrics(req: dict[str, Any]) -> dict[str, Any]:
    return reply(await call("state::get", {"scope": "todo-metrics", "key": "global"}) or {})


async def on_change(event: dict[str, Any]) -> dict[str, Any]:
    old, new, key = event.get("old_value"), event.get("new_value"), event["key"]
    action = "created" if not old else "deleted" if not new else "updated"
    await iii.trigger_async(
        {
            "function_id": "stream::send",
            "payload": {
                "stream_name": "todos-live",
                "group_id": "all",
                "id": f"change-{int(time.time() * 1000)}",
                "type": "todo_changed",
                "data": {"action": action, "key": key, "todo": new},
            },
            "action": TriggerAction.Void(),
        }
    )
    return {"action": action, "key": key}


async def update_metrics(event: dict[str, Any]) -> None:
    old, new = event.get("old_value"), event.get("new_value")
    ops: list[dict[str, Any]] = []
    if new and not old:
        ops.append({"type": "increment", "path": "total", "by": 1})
    if old and not new:
        ops.append({"type": "increment", "path": "total", "by": -1})
        if old.get("completed"):
            ops.append({"type": "increment", "path": "completed", "by": -1})
    if new and old and new.get("completed") != old.get("completed"):
        ops.append({"type": "increment", "path": "completed", "by": 1 if new.get("completed") else -1})
    if ops:
        await call("state::update", {"scope": "todo-metrics", "key": "global", "ops": ops})


for function_id, handler, path, method in [
    ("todos::create", create, "/todos", "POST"),
    ("todos::list", list_todos, "/todos", "GET"),
    ("todos::toggle", toggle, "/todos/toggle", "POST"),
    ("todos::delete", delete, "/todos/delete", "POST"),
    ("todos::get-metrics", get_metrics, "/todos/metrics", "GET"),
]:
    iii.register_function(function_id, handler)
    iii.register_trigger(
        {"type": "http", "function_id": function_id, "config": {"api_path": path, "http_method": method}}
    )

iii.register_function("todos::on-change", on_change)
iii.register_trigger({"type": "state", "function_id": "todos::on-change", "config": {"scope": "todos"}})
iii.register_function("todos::update-metrics", update_metrics)
iii.register_trigger({"type": "state", "function_id": "todos::update-metrics", "config": {"scope": "todos"}})

if __name__ == "__main__":
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print("todo-worker-python ready", flush=True)
    stop.wait()
    iii.shutdown()
