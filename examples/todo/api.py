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
from litestar import Controller, Request, Response, get, post
from litestar.datastructures import ResponseHeader

from examples.todo.model import COUNTERS_KEY, COUNTERS_SCOPE, SCOPE, Todo, as_todo
from ripple import InvalidValueError, NotFoundError, PreconditionFailedError, SetOp, Store, ValidationError
from ripple.http.rest import body_operation, read_json

MAX_TITLE_CHARS = 500
TOGGLE_ATTEMPTS = 5
SKIPPED_HEADER = "Todos-Skipped"


class NewTodo(msgspec.Struct, forbid_unknown_fields=True):
    title: str


class TodoRef(msgspec.Struct, forbid_unknown_fields=True):
    id: str


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


def _unexpected_value(scope: str, key: str, what: str) -> InvalidValueError:
    """A stored value of the wrong shape is the data's fault, not the server's: 422 naming the key, never 500."""
    return InvalidValueError(
        f"{scope}/{key} holds a value that is not {what}; fix it (PUT /v1/state/{scope}/{key}) or delete it",
        detail={"scope": scope, "key": key},
    )


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

    # GET /todos skips values that are not todos rather than failing the whole list: the user came for the todos,
    # and one stray value written through the REST API should not hide them. The count of skipped values is in the
    # Todos-Skipped header, so a client can tell that the scope holds something else too.
    @get(
        "/",
        response_headers=[
            ResponseHeader(name=SKIPPED_HEADER, description="values in scope todos that are not todos (skipped)",
                           value="0", documentation_only=True)  # the value only gives the schema its type
        ],
    )
    async def list_todos(self, request: Request[Any, Any, Any]) -> Response[list[Todo]]:
        """Every todo, oldest first; values in scope ``todos`` that are not todos are skipped and counted."""
        store, cursor = _store(request), None
        todos: list[Todo] = []
        skipped = 0
        while True:
            page = await store.list(SCOPE, limit=1000, cursor=cursor)
            for entry in page.items:
                todo = as_todo(entry.value)
                if todo is None:
                    skipped += 1
                else:
                    todos.append(todo)
            if page.next_cursor is None:
                return Response(todos, headers={SKIPPED_HEADER: str(skipped)})
            cursor = page.next_cursor

    @post("/toggle", status_code=200, operation_class=body_operation(TodoRef, "the todo to toggle"))
    async def toggle(self, request: Request[Any, Any, Any]) -> Todo:
        """Flip ``completed``; optimistic concurrency makes two concurrent toggles both count. A key whose value is
        not a todo → 422 naming it (toggling would turn it into half a todo)."""
        store, data = _store(request), await read_json(request, TodoRef)
        for _ in range(TOGGLE_ATTEMPTS):
            entry = await store.entry(SCOPE, data.id)
            if entry is None:
                raise _missing(data.id)
            todo = as_todo(entry.value)
            if todo is None:
                raise _unexpected_value(SCOPE, data.id, "a todo {id, title, completed, created_at}")
            try:
                result = await store.update(
                    SCOPE, data.id, [SetOp("completed", not todo.completed)], expected_offset=entry.offset
                )
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
        """The counters the todo reaction keeps in ``todo-metrics/global`` (zeros before the first todo).

        They are eventually consistent: the reaction updates them after each todo write commits, so a read right
        after a write may not include it yet. The ``todo_stats`` projection (``GET /v1/projections/todo_stats``)
        is updated in the write's own transaction (read-your-writes).
        """
        value = await _store(request).get(COUNTERS_SCOPE, COUNTERS_KEY)
        if value is None:
            return TodoMetrics()
        try:
            return msgspec.convert(value, TodoMetrics, strict=False)
        except msgspec.ValidationError:
            what = "the todo counters {total, completed, active}"
            raise _unexpected_value(COUNTERS_SCOPE, COUNTERS_KEY, what) from None
