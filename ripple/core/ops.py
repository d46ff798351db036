"""Update ops: pure functions from (value, ops) to (new value, per-op errors). No I/O.

Semantics follow iii's ``state::update`` (III-PROTOCOL §3.2) with ripple's settled differences (DESIGN §4):

* a string path is **one literal top-level field** (``"a.b"`` is the field named ``a.b``); a list of strings is a
  nested path; ``None``, ``""`` and ``[]`` mean the whole value;
* a failing op is reported as an :class:`OpError` and skipped; the other ops still apply;
* ``by`` may be any finite number; an op whose result would be a top-level ``null`` fails;
* the input value is never mutated: containers along the touched path are copied.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

Path = str | list[str] | None

MAX_PATH_SEGMENTS = 32
MAX_SEGMENT_BYTES = 256
MAX_MERGE_KEYS = 1024
MAX_MERGE_DEPTH = 16
FORBIDDEN_SEGMENTS = frozenset({"__proto__", "constructor", "prototype"})
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class SetOp(msgspec.Struct, frozen=True, tag="set", tag_field="type"):
    path: Path = None
    value: Any = None


class MergeOp(msgspec.Struct, frozen=True, tag="merge", tag_field="type"):
    value: Any
    path: Path = None


class IncrementOp(msgspec.Struct, frozen=True, tag="increment", tag_field="type"):
    path: Path
    by: int | float


class DecrementOp(msgspec.Struct, frozen=True, tag="decrement", tag_field="type"):
    path: Path
    by: int | float


class AppendOp(msgspec.Struct, frozen=True, tag="append", tag_field="type"):
    value: Any
    path: Path = None


class RemoveOp(msgspec.Struct, frozen=True, tag="remove", tag_field="type"):
    path: Path


UpdateOp = SetOp | MergeOp | IncrementOp | DecrementOp | AppendOp | RemoveOp


class OpFailure(Exception):
    """Raised inside one op; becomes an OpError and the op is skipped."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def op_name(op: UpdateOp) -> str:
    return type(op).__struct_config__.tag  # type: ignore[return-value]


def parse_path(op: str, path: Path) -> tuple[str, ...]:
    """Normalise a path to its segments, enforcing iii's limits."""
    if path is None or path == "" or path == []:
        return ()
    if isinstance(path, str):
        segments: tuple[str, ...] = (path,)
    elif isinstance(path, list) and all(isinstance(s, str) for s in path):
        segments = tuple(path)
    else:
        raise OpFailure(f"{op}.path.invalid", "path must be a string or a list of strings")
    if len(segments) > MAX_PATH_SEGMENTS:
        raise OpFailure(f"{op}.path.too_deep", f"path has more than {MAX_PATH_SEGMENTS} segments")
    for seg in segments:
        if seg == "":
            raise OpFailure(f"{op}.path.empty_segment", "path has an empty segment")
        if len(seg.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
            raise OpFailure(
                f"{op}.path.segment_too_long", f"path segment longer than {MAX_SEGMENT_BYTES} bytes"
            )
        if seg in FORBIDDEN_SEGMENTS:
            raise OpFailure(f"{op}.path.proto_polluted", f"path segment {seg!r} is not allowed")
    return segments


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _descend(
    op: str, root: Any, segments: tuple[str, ...], *, replace_non_objects: bool
) -> tuple[Any, dict[str, Any]]:
    """Copy the containers along ``segments[:-1]`` and return ``(new_root, parent_of_last_segment)``.

    Missing intermediates are created as ``{}``. A non-object intermediate is replaced by ``{}`` when
    ``replace_non_objects`` (merge), otherwise the op fails.
    """
    if not isinstance(root, dict):
        raise OpFailure(f"{op}.target_not_object", "the current value is not an object")
    new_root = dict(root)
    parent = new_root
    for seg in segments[:-1]:
        child = parent.get(seg)
        if child is None:
            child = {}
        elif isinstance(child, dict):
            child = dict(child)
        elif replace_non_objects:
            child = {}
        else:
            raise OpFailure(f"{op}.target_not_object", f"field {seg!r} on the path is not an object")
        parent[seg] = child
        parent = child
    return new_root, parent


def _check_merge_value(value: Any) -> None:
    if not isinstance(value, dict):
        raise OpFailure("merge.value.not_an_object", "merge value must be an object")
    if len(value) > MAX_MERGE_KEYS:
        raise OpFailure("merge.value.too_many_keys", f"merge value has more than {MAX_MERGE_KEYS} keys")

    def walk(v: Any, depth: int) -> None:
        if depth > MAX_MERGE_DEPTH:
            raise OpFailure("merge.value.too_deep", f"merge value is nested deeper than {MAX_MERGE_DEPTH}")
        if isinstance(v, dict):
            for k, child in v.items():
                if k in FORBIDDEN_SEGMENTS:
                    raise OpFailure("merge.value.proto_polluted", f"merge value has the key {k!r}")
                walk(child, depth + 1)
        elif isinstance(v, list):
            for child in v:
                walk(child, depth + 1)

    walk(value, 1)


def _add(op: str, current: Any, by: Any) -> int | float:
    if not _is_number(by) or (isinstance(by, float) and not math.isfinite(by)):
        raise OpFailure(f"{op}.by.not_number", "by must be a finite number")
    delta: int | float = by if op == "increment" else -by
    result: int | float
    if current is None:
        result = delta
    elif isinstance(current, int | float) and not isinstance(current, bool):
        result = current + delta
    else:
        raise OpFailure(f"{op}.not_number", "the target is not a number")
    if isinstance(result, int) and not INT64_MIN <= result <= INT64_MAX:
        raise OpFailure(f"{op}.overflow", "the result is outside the 64-bit integer range")
    if isinstance(result, float) and not math.isfinite(result):
        raise OpFailure(f"{op}.overflow", "the result is not a finite number")
    return result


def _appended(current: Any, value: Any, nested: bool) -> Any:
    if isinstance(current, list):
        return [*current, value]
    if isinstance(current, str) and isinstance(value, str):
        return current + value
    if current is None:
        return value if isinstance(value, str) and not nested else [value]
    raise OpFailure("append.type_mismatch", "the target is neither an array, a string nor missing")


def apply_op(root: Any, op: UpdateOp) -> Any:
    """Apply one op to ``root`` and return the new root; raise :class:`OpFailure` if it cannot apply."""
    name = op_name(op)
    segments = parse_path(name, op.path)
    if isinstance(op, SetOp):
        if not segments:
            return op.value
        new_root, parent = _descend(name, root, segments, replace_non_objects=False)
        parent[segments[-1]] = op.value
        return new_root
    if isinstance(op, MergeOp):
        _check_merge_value(op.value)
        if not segments:
            if not isinstance(root, dict):
                raise OpFailure("merge.target_not_object", "cannot merge into a value that is not an object")
            return {**root, **op.value}
        new_root, parent = _descend(name, root, segments, replace_non_objects=True)
        target = parent.get(segments[-1])
        parent[segments[-1]] = {**target, **op.value} if isinstance(target, dict) else dict(op.value)
        return new_root
    if isinstance(op, IncrementOp | DecrementOp):
        if not segments:
            return _add(name, root, op.by)
        new_root, parent = _descend(name, root, segments, replace_non_objects=False)
        parent[segments[-1]] = _add(name, parent.get(segments[-1]), op.by)
        return new_root
    if isinstance(op, AppendOp):
        if not segments:
            if isinstance(root, dict):
                raise OpFailure("append.type_mismatch", "cannot append to an object")
            return _appended(root, op.value, nested=False)
        new_root, parent = _descend(name, root, segments, replace_non_objects=False)
        parent[segments[-1]] = _appended(parent.get(segments[-1]), op.value, nested=len(segments) > 1)
        return new_root
    if isinstance(op, RemoveOp):
        if not segments:
            return None
        if not isinstance(root, dict):
            return root
        new_root = dict(root)
        parent = new_root
        for seg in segments[:-1]:
            child = parent.get(seg)
            if not isinstance(child, dict):
                return root  # nothing at that path: removing it is no error
            child = dict(child)
            parent[seg] = child
            parent = child
        parent.pop(segments[-1], None)
        return new_root
    raise OpFailure("update.unknown_op", f"unknown op {op!r}")


def apply_ops(value: Any, ops: list[UpdateOp]) -> tuple[Any, list[tuple[int, str, str]]]:
    """Apply ``ops`` in order to ``value`` (``None`` = missing key, starts from ``{}``).

    Returns the new value and the failures as ``(op_index, code, message)``. A failing op is skipped. An op whose
    result would be a top-level ``null`` fails too.
    """
    current: Any = {} if value is None else value
    errors: list[tuple[int, str, str]] = []
    for index, op in enumerate(ops):
        try:
            result = apply_op(current, op)
        except OpFailure as failure:
            errors.append((index, failure.code, failure.message))
            continue
        if result is None:
            errors.append(
                (index, f"{op_name(op)}.null_value", "the result would be a top-level null; use delete")
            )
            continue
        current = result
    return current, errors
