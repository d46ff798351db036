"""The public API is exactly what ripple/__init__.py exports (fails on drift, as httpx's test does)."""

from __future__ import annotations

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
    writer: LogWriter = Writer("x.db")
    reader: LogReader = Reader("x.db")
    assert writer.head == 0 and reader is not None
