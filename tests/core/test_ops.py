"""Update ops: every op and edge case, pure (no SQLite, no event loop)."""

from __future__ import annotations

from typing import Any

import pytest

from ripple.core.ops import (
    AppendOp,
    DecrementOp,
    IncrementOp,
    MergeOp,
    RemoveOp,
    SetOp,
    UpdateOp,
    apply_ops,
)


def run(value: Any, *ops: UpdateOp) -> tuple[Any, list[str]]:
    new, errors = apply_ops(value, list(ops))
    return new, [code for _, code, _ in errors]


def test_missing_key_starts_from_empty_object() -> None:
    assert run(None, SetOp("title", "x")) == ({"title": "x"}, [])


def test_set_string_path_is_one_literal_field() -> None:
    assert run({"a": {"b": 1}}, SetOp("a.b", 2)) == ({"a": {"b": 1}, "a.b": 2}, [])


def test_set_list_path_is_nested_and_creates_intermediates() -> None:
    assert run({}, SetOp(["a", "b", "c"], 1)) == ({"a": {"b": {"c": 1}}}, [])


def test_set_whole_value_with_empty_or_absent_path() -> None:
    assert run({"a": 1}, SetOp("", [1, 2])) == ([1, 2], [])
    assert run({"a": 1}, SetOp(None, 5)) == (5, [])
    assert run({"a": 1}, SetOp([], "s")) == ("s", [])


def test_set_missing_value_stores_null_field() -> None:
    assert run({}, SetOp("a")) == ({"a": None}, [])


def test_set_on_non_object_fails() -> None:
    assert run(5, SetOp("a", 1)) == (5, ["set.target_not_object"])
    assert run({"a": 3}, SetOp(["a", "b"], 1)) == ({"a": 3}, ["set.target_not_object"])


def test_set_top_level_null_fails() -> None:
    assert run({"a": 1}, SetOp("", None)) == ({"a": 1}, ["set.null_value"])


def test_merge_root_and_nested() -> None:
    assert run({"a": 1, "b": 2}, MergeOp({"b": 3, "c": 4})) == ({"a": 1, "b": 3, "c": 4}, [])
    assert run({"x": {"y": 1}}, MergeOp({"z": 2}, "x")) == ({"x": {"y": 1, "z": 2}}, [])
    assert run({}, MergeOp({"z": 2}, ["p", "q"])) == ({"p": {"q": {"z": 2}}}, [])


def test_merge_replaces_non_object_intermediates_and_target() -> None:
    assert run({"p": 1}, MergeOp({"z": 2}, ["p", "q"])) == ({"p": {"q": {"z": 2}}}, [])
    assert run({"p": "s"}, MergeOp({"z": 2}, "p")) == ({"p": {"z": 2}}, [])


def test_merge_non_object_value_fails() -> None:
    assert run({}, MergeOp([1])) == ({}, ["merge.value.not_an_object"])


def test_merge_into_non_object_root_fails() -> None:
    assert run([1], MergeOp({"a": 1})) == ([1], ["merge.target_not_object"])


def test_merge_value_limits() -> None:
    assert run({}, MergeOp({f"k{i}": i for i in range(1025)}))[1] == ["merge.value.too_many_keys"]
    deep: Any = 1
    for _ in range(17):
        deep = {"d": deep}
    assert run({}, MergeOp(deep))[1] == ["merge.value.too_deep"]
    assert run({}, MergeOp({"__proto__": 1}))[1] == ["merge.value.proto_polluted"]


def test_increment_missing_field_becomes_by() -> None:
    assert run({}, IncrementOp("n", 3)) == ({"n": 3}, [])
    assert run({}, DecrementOp("n", 3)) == ({"n": -3}, [])


def test_increment_negative_and_float_by() -> None:
    assert run({"n": 1}, IncrementOp("n", -5)) == ({"n": -4}, [])
    assert run({"n": 1}, IncrementOp("n", 0.5)) == ({"n": 1.5}, [])
    assert run({"n": 1.5}, DecrementOp("n", 1)) == ({"n": 0.5}, [])


def test_increment_numeric_root() -> None:
    assert run(10, IncrementOp("", 2)) == (12, [])


def test_increment_not_number() -> None:
    assert run({"n": "x"}, IncrementOp("n", 1)) == ({"n": "x"}, ["increment.not_number"])
    assert run({"n": True}, IncrementOp("n", 1)) == ({"n": True}, ["increment.not_number"])
    assert run({}, IncrementOp("", 1)) == ({}, ["increment.not_number"])


def test_increment_overflow_and_bad_by() -> None:
    assert run({"n": 2**63 - 1}, IncrementOp("n", 1))[1] == ["increment.overflow"]
    assert run({"n": 1}, IncrementOp("n", float("inf")))[1] == ["increment.by.not_number"]
    assert run({"n": 1}, IncrementOp("n", True))[1] == ["increment.by.not_number"]


def test_increment_nested_creates_intermediates() -> None:
    assert run({}, IncrementOp(["a", "b"], 1)) == ({"a": {"b": 1}}, [])


def test_append_array_string_and_missing() -> None:
    assert run({"t": [1]}, AppendOp(2, "t")) == ({"t": [1, 2]}, [])
    assert run({"s": "ab"}, AppendOp("c", "s")) == ({"s": "abc"}, [])
    assert run({}, AppendOp("c", "s")) == ({"s": "c"}, [])
    assert run({}, AppendOp(1, "t")) == ({"t": [1]}, [])
    assert run({"t": None}, AppendOp(1, "t")) == ({"t": [1]}, [])
    assert run({}, AppendOp("c", ["a", "b"])) == ({"a": {"b": ["c"]}}, [])
    assert run([1], AppendOp(2)) == ([1, 2], [])


def test_append_type_mismatch() -> None:
    assert run({"t": {}}, AppendOp(1, "t"))[1] == ["append.type_mismatch"]
    assert run({"t": 5}, AppendOp(1, "t"))[1] == ["append.type_mismatch"]
    assert run({"s": "ab"}, AppendOp(1, "s"))[1] == ["append.type_mismatch"]
    assert run({}, AppendOp(1))[1] == ["append.type_mismatch"]


def test_remove_field_missing_field_and_nested() -> None:
    assert run({"a": 1, "b": 2}, RemoveOp("a")) == ({"b": 2}, [])
    assert run({"a": 1}, RemoveOp("zzz")) == ({"a": 1}, [])
    assert run({"a": {"b": 1, "c": 2}}, RemoveOp(["a", "b"])) == ({"a": {"c": 2}}, [])
    assert run({"a": 5}, RemoveOp(["a", "b"])) == ({"a": 5}, [])


def test_remove_root_would_be_null_and_fails() -> None:
    assert run({"a": 1}, RemoveOp("")) == ({"a": 1}, ["remove.null_value"])


def test_path_limits() -> None:
    assert run({}, SetOp([f"s{i}" for i in range(33)], 1))[1] == ["set.path.too_deep"]
    assert run({}, SetOp("x" * 257, 1))[1] == ["set.path.segment_too_long"]
    assert run({}, SetOp(["a", ""], 1))[1] == ["set.path.empty_segment"]
    assert run({}, SetOp("__proto__", 1))[1] == ["set.path.proto_polluted"]
    assert run({}, IncrementOp(["constructor"], 1))[1] == ["increment.path.proto_polluted"]


def test_failing_op_is_skipped_and_others_apply() -> None:
    new, errors = apply_ops({"n": "x"}, [SetOp("a", 1), IncrementOp("n", 1), SetOp("b", 2)])
    assert new == {"n": "x", "a": 1, "b": 2}
    assert errors == [(1, "increment.not_number", "the target is not a number")]


def test_input_is_never_mutated() -> None:
    value = {"a": {"b": [1]}, "c": 1}
    apply_ops(value, [AppendOp(2, ["a", "b"]), SetOp(["a", "x"], 1), RemoveOp("c"), MergeOp({"m": 1}, "a")])
    assert value == {"a": {"b": [1]}, "c": 1}


@pytest.mark.parametrize("op", [SetOp("a", 1), MergeOp({"a": 1}), IncrementOp("a", 1), AppendOp(1, "a")])
def test_ops_apply_to_missing_key(op: UpdateOp) -> None:
    new, errors = apply_ops(None, [op])
    assert errors == [] and isinstance(new, dict)
