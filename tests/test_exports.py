"""The public API is exactly what ripple/__init__.py exports (fails on drift, as httpx's test does)."""

from __future__ import annotations

import inspect
import textwrap
import types

import ripple
from ripple.store.log import LogReader, LogWriter
from ripple.store.reader import Reader
from ripple.store.writer import Writer


def test_all_names_exist_and_are_public() -> None:
    for name in ripple.__all__:
        assert hasattr(ripple, name), name
    public = {n for n in dir(ripple) if not n.startswith("_") and n != "annotations"
              and not isinstance(getattr(ripple, n), types.ModuleType)}
    assert public - set(ripple.__all__) == set()


def test_every_error_is_a_ripple_error_with_code_and_status() -> None:
    for name in ripple.__all__:
        obj = getattr(ripple, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, ripple.RippleError), name
            assert isinstance(obj.code, str) and 400 <= obj.status < 600, name


def test_sqlite_classes_implement_the_storage_interface() -> None:
    # statically (mypy --strict runs on tests): the SQLite classes are assignable to the protocols ...
    writer: LogWriter = Writer("x.db")
    reader: LogReader = Reader("x.db")
    # ... and at run time every member of each protocol exists with the same parameters
    for protocol, impl in ((LogWriter, writer), (LogReader, reader)):
        members = {n for n in vars(protocol) if not n.startswith("_")} | set(protocol.__annotations__)
        for name in sorted(members):
            assert hasattr(impl, name), f"{type(impl).__name__} lacks {protocol.__name__}.{name}"
            wanted = getattr(protocol, name, None)
            if callable(wanted):
                expected = list(inspect.signature(wanted).parameters)[1:]  # without self
                found = inspect.signature(getattr(impl, name)).parameters
                extra = [p for n, p in found.items() if n not in expected]
                assert list(found)[: len(expected)] == expected and all(
                    p.default is not inspect.Parameter.empty for p in extra
                ), f"{type(impl).__name__}.{name}{found} does not match {protocol.__name__}.{name}{expected}"


def test_the_error_tree_in_the_docs_is_the_one_in_the_code() -> None:
    from pathlib import Path

    docstring = ripple.errors.__doc__ or ""
    tree = textwrap.dedent(docstring[docstring.index("    RippleError"):]).strip()
    page = (Path(__file__).resolve().parent.parent / "docs" / "errors.md").read_text()
    assert tree in page, "docs/errors.md shows an error tree that differs from ripple/errors.py's docstring"
