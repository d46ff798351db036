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
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ripple.errors import RegistrationError, RippleError

if TYPE_CHECKING:
    from ripple.store.store import Store

Setup = Callable[["Store"], Any]


USAGE = "--app expects module:function or path/to/file.py:function (e.g. examples.todo:setup)"


def load_setup(spec: str) -> Setup:
    """Import the ``setup`` function that ``spec`` names and return it.

    ``spec`` is ``package.module:function`` (imported with the current directory on ``sys.path``, so it works from
    the directory that holds the package) or ``path/to/file.py:function`` — a module file, a package's
    ``__init__.py`` or a package directory, relative or absolute — which works from anywhere.
    """
    if not isinstance(spec, str):
        raise RegistrationError(f"{USAGE}, got {spec!r}")
    target, colon, func_name = spec.rpartition(":")
    if not colon or not target or not func_name:
        raise RegistrationError(f"{USAGE}, got {spec!r}", detail={"app": spec})
    if _is_path(target):
        module = _import_file(spec, target, func_name)
    else:
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
        module = _import(spec, target, func_name)
    func = getattr(module, func_name, None)
    if func is None:
        raise RegistrationError(f"--app {spec}: {target} has no attribute {func_name!r}", detail={"app": spec})
    if not callable(func):
        raise RegistrationError(f"--app {spec}: {target}:{func_name} is not callable", detail={"app": spec})
    setup: Setup = func
    return setup


def _is_path(target: str) -> bool:
    return "/" in target or os.sep in target or target.endswith(".py")


def _import_file(spec: str, target: str, func_name: str) -> ModuleType:
    """Import a ``.py`` file (or a package directory) under its dotted name, its package root put on ``sys.path``,
    so the imports inside it resolve as they do when it is imported by name."""
    path = Path(target)
    if path.is_dir():
        if not (path / "__init__.py").is_file():
            raise RegistrationError(f"--app {spec}: {target} is a directory with no __init__.py; name its .py file",
                                    detail={"app": spec})
        path = path / "__init__.py"
    elif not path.exists():
        raise RegistrationError(f"--app {spec}: no such file {target} (looked in {os.getcwd()})",
                                detail={"app": spec})
    elif path.suffix != ".py":
        raise RegistrationError(f"--app {spec}: {target} is not a Python file (.py) or a package directory",
                                detail={"app": spec})
    path = path.resolve()
    root, name = _module_name(path)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = _import(spec, name, func_name)
    loaded = getattr(module, "__file__", None)
    if loaded is None or Path(loaded).resolve() != path:
        raise RegistrationError(
            f"--app {spec}: the module name {name!r} is already taken by {loaded or 'a built-in module'}; "
            f"rename {path.name}",
            detail={"app": spec},
        )
    return module


def _module_name(path: Path) -> tuple[Path, str]:
    """(the directory to put on ``sys.path``, the dotted module name) of a ``.py`` file: walk up while the parent
    directory is a package (``examples/todo/__init__.py`` → ``examples.todo``, rooted above ``examples``)."""
    parts = [] if path.name == "__init__.py" else [path.stem]
    directory = path.parent
    while (directory / "__init__.py").is_file() and directory.parent != directory:
        parts.insert(0, directory.name)
        directory = directory.parent
    return directory, ".".join(parts)


def _import(spec: str, name: str, func_name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise RegistrationError(
                f"--app {spec}: cannot import {name} ({exc}) from {os.getcwd()}: run ripple from the directory "
                f"that holds it, or name its file (--app path/to/file.py:{func_name})",
                detail={"app": spec},
            ) from None
        raise RegistrationError(f"--app {spec}: importing {name} failed: ModuleNotFoundError: {exc}",
                                detail={"app": spec}) from exc
    except Exception as exc:  # the user's module may raise anything while it is imported
        raise RegistrationError(f"--app {spec}: importing {name} failed: {type(exc).__name__}: {exc}",
                                detail={"app": spec}) from exc


def apply_setup(store: Store, spec: str | Setup, *, reactions: bool = True) -> list[Any]:
    """Call the user's ``setup(store)`` and return the route handlers it returned (``[]`` for ``None``).

    ``reactions=False`` (the offline tool): reactions registered by ``setup`` are accepted but never run.
    """
    setup = load_setup(spec) if isinstance(spec, str) else spec
    if not reactions:
        store.reactions.enabled = False
    try:
        result = setup(store)
    except RippleError:
        raise
    except Exception as exc:  # one line on the command line, the traceback kept as the cause
        name = spec if isinstance(spec, str) else f"{setup.__module__}:{setup.__qualname__}"
        raise RegistrationError(f"--app {name}: setup(store) raised {type(exc).__name__}: {exc}") from exc
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
