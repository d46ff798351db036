"""The todo app as a web page: ``GET /todo`` and its files (``examples/todo/static/``), served by ``ripple serve --app
examples.todo:setup`` beside the todo API. The page talks to ripple only through ``ripple.js`` (``/ripple.js``): one
subscription keeps the list and the counters live in every open tab; writes use the REST helper with If-Match."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ripple.http.console import static_routes

STATIC_DIR = Path(__file__).resolve().parent / "static"


def page_handlers() -> list[Any]:
    """``GET /todo`` (the page) and ``GET /todo/{file}`` (its script and styles)."""
    return static_routes("/todo", STATIC_DIR, index="index.html", name="todo-page")
