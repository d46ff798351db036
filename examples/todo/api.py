"""The todo app of the seed as REST endpoints on a ripple Store (a Litestar Controller).

Todos live in scope ``todos`` as ``{id, title, completed, created_at}``; the metrics are the counters that the todo
reaction keeps in ``todo-metrics/global`` (``total``, ``completed``, ``active``). Serve it with
``ripple serve --app examples.todo:setup`` (reaction + projection + these routes).

    curl -X POST localhost:8000/todos -H 'content-type: application/json' -d '{"title": "buy milk"}'
    curl localhost:8000/todos
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Controller, Request, get, post

from ripple import NotFoundError, PreconditionFailedError, SetOp, Store, ValidationError
from ripple.http.rest import body_operation, read_json

SCOPE = "todos"
METRICS = ("todo-metrics", "global")
MAX_TITLE_CHARS = 500
TOGGLE_ATTEMPTS = 5


class NewTodo(msgspec.Struct, forbid_unknown_fields=True):
    title: str


class TodoRef(msgspec.Struct, forbid_unknown_fields=True):
    id: str


class Todo(msgspec.Struct):
    id: str
    title: str
    completed: bool
    created_at: str


class TodoMetrics(msgspec.Struct):
    total: int = 0
    completed: int = 0
    active: int = 0


class Deleted(msgspec.Struct):
    id: str
    deleted: bool = True


def _store(request: Request[Any, Any, Any]) -> Store:
    store: Store = request.app.state.store
    return store


def _missing(todo_id: str) -> NotFoundError:
    return NotFoundError(f"no todo with id {todo_id!r}", detail={"id": todo_id})


class TodoController(Controller):
    path = "/todos"
    tags = ("todos",)

    # Bodies go through ripple's decoder (as the REST API's do): not JSON at all → 400, the wrong shape → 422.
    @post("/", operation_class=body_operation(NewTodo, "the new todo"))
    async def create(self, request: Request[Any, Any, Any]) -> Todo:
        """Create a todo (201)."""
        data = await read_json(request, NewTodo)
        title = data.title.strip()
        if not 1 <= len(title) <= MAX_TITLE_CHARS:
            raise ValidationError(f"title must be 1-{MAX_TITLE_CHARS} characters", detail={"title": data.title})
        todo = Todo(uuid.uuid4().hex, title, False, datetime.now(UTC).isoformat(timespec="milliseconds"))
        await _store(request).set(SCOPE, todo.id, msgspec.to_builtins(todo), expected_offset=0)
        return todo

    @get("/")
    async def list_todos(self, request: Request[Any, Any, Any]) -> list[Todo]:
        """Every todo, oldest first."""
        store, cursor = _store(request), None
        todos: list[Todo] = []
        while True:
            page = await store.list(SCOPE, limit=1000, cursor=cursor)
            todos.extend(msgspec.convert(e.value, Todo) for e in page.items)
            if page.next_cursor is None:
                return todos
            cursor = page.next_cursor

    @post("/toggle", status_code=200, operation_class=body_operation(TodoRef, "the todo to toggle"))
    async def toggle(self, request: Request[Any, Any, Any]) -> Todo:
        """Flip ``completed``; optimistic concurrency makes two concurrent toggles both count."""
        store, data = _store(request), await read_json(request, TodoRef)
        for _ in range(TOGGLE_ATTEMPTS):
            entry = await store.entry(SCOPE, data.id)
            if entry is None:
                raise _missing(data.id)
            flipped = SetOp("completed", not entry.value.get("completed", False))
            try:
                result = await store.update(SCOPE, data.id, [flipped], expected_offset=entry.offset)
            except PreconditionFailedError:
                continue  # changed under us: read again
            return msgspec.convert(result.new_value, Todo)
        raise PreconditionFailedError(f"todo {data.id!r} kept changing; try again", detail={"id": data.id})

    @post("/delete", status_code=200, operation_class=body_operation(TodoRef, "the todo to delete"))
    async def delete(self, request: Request[Any, Any, Any]) -> Deleted:
        """Delete a todo; 404 when there is none with that id."""
        data = await read_json(request, TodoRef)
        if await _store(request).delete(SCOPE, data.id) is None:
            raise _missing(data.id)
        return Deleted(data.id)

    @get("/metrics")
    async def metrics(self, request: Request[Any, Any, Any]) -> TodoMetrics:
        """The counters the todo reaction keeps in ``todo-metrics/global`` (zeros before the first todo)."""
        value = await _store(request).get(*METRICS)
        return TodoMetrics() if value is None else msgspec.convert(value, TodoMetrics, strict=False)

