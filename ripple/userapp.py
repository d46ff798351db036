"""Loading user code: ``ripple serve --app module:setup`` (and the offline tool's ``--app``), DESIGN §6.

``setup(store)`` registers the user's reactions and projections on the store and may return Litestar route
handlers, which ``serve`` mounts. The offline tool calls it with ``reactions=False``: projections are registered
(so ``verify``/``rebuild``/``replay`` fold the same read models), reactions are accepted but never run.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ripple.errors import RegistrationError

if TYPE_CHECKING:
    from ripple.store.store import Store

Setup = Callable[["Store"], Any]


def load_setup(spec: str) -> Setup:
    """Import ``"package.module:function"`` (the current directory is on ``sys.path``) and return the function."""
    if not isinstance(spec, str) or spec.count(":") != 1:
        raise RegistrationError(f"--app expects module:function (e.g. examples.todo:setup), got {spec!r}")
    module_name, func_name = spec.split(":")
    if not module_name or not func_name:
        raise RegistrationError(f"--app expects module:function (e.g. examples.todo:setup), got {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RegistrationError(f"--app {spec}: cannot import {module_name}: {exc}", detail={"app": spec}) from None
    func = getattr(module, func_name, None)
    if func is None:
        raise RegistrationError(f"--app {spec}: {module_name} has no attribute {func_name!r}", detail={"app": spec})
    if not callable(func):
        raise RegistrationError(f"--app {spec}: {module_name}.{func_name} is not callable", detail={"app": spec})
    setup: Setup = func
    return setup


def apply_setup(store: Store, spec: str | Setup, *, reactions: bool = True) -> list[Any]:
    """Call the user's ``setup(store)`` and return the route handlers it returned (``[]`` for ``None``).

    ``reactions=False`` (the offline tool): reactions registered by ``setup`` are accepted but never run.
    """
    setup = load_setup(spec) if isinstance(spec, str) else spec
    if not reactions:
        store.reactions.enabled = False
    result = setup(store)
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # don't leave a never-awaited coroutine behind
        raise RegistrationError("setup(store) must be a plain function (not async): it only registers things")
    if result is None:
        return []
    if isinstance(result, list | tuple):
        return list(result)
    raise RegistrationError(
        f"setup(store) must return a list of route handlers or None, not {type(result).__name__}"
    )
