"""Deciding events from old state and commands, and validating names and values. Pure."""

from __future__ import annotations

import math

import msgspec
import pytest

from ripple.core.decide import KeyState, decide_delete, decide_set, decide_update
from ripple.core.events import Delete, Set, Update
from ripple.core.ops import IncrementOp, SetOp
from ripple.core.validate import encode_value, validate_key, validate_scope
from ripple.errors import (
    InvalidNameError,
    InvalidValueError,
    PreconditionFailedError,
    UpdateRejectedError,
    ValueTooLargeError,
)


def state(value: object, version: int = 1, last: int = 5, created: int = 3) -> KeyState:
    return KeyState(msgspec.json.encode(value), version, last, created)


def test_set_missing_key_is_created_version_1() -> None:
    c = decide_set(Set("s", "k", {"a": 1}), b'{"a":1}', None)
    assert (c.event_type, c.version, c.old_value, c.new_value) == ("created", 1, None, {"a": 1})


def test_set_present_key_is_updated_version_plus_one() -> None:
    c = decide_set(Set("s", "k", 2), b"2", state(1, version=4))
    assert (c.event_type, c.version, c.old_value, c.new_value) == ("updated", 5, 1, 2)


def test_delete_present_and_missing() -> None:
    c = decide_delete(Delete("s", "k"), state({"x": 1}, version=3))
    assert c is not None and (c.event_type, c.version, c.old_value, c.new_value) == ("deleted", 0, {"x": 1}, None)
    assert decide_delete(Delete("s", "k"), None) is None


def test_expected_offset() -> None:
    decide_set(Set("s", "k", 1, expected_offset=5), b"1", state(0, last=5))
    decide_set(Set("s", "k", 1, expected_offset=0), b"1", None)
    with pytest.raises(PreconditionFailedError):
        decide_set(Set("s", "k", 1, expected_offset=4), b"1", state(0, last=5))
    with pytest.raises(PreconditionFailedError):
        decide_set(Set("s", "k", 1, expected_offset=0), b"1", state(0, last=5))
    with pytest.raises(PreconditionFailedError):
        decide_delete(Delete("s", "k", expected_offset=3), None)


def test_update_reports_errors_and_rejects_when_all_fail() -> None:
    c = decide_update(Update("s", "k", [SetOp("a", 1), IncrementOp("a", "x")]), None, 1 << 20)  # type: ignore[arg-type]
    assert c.event_type == "created" and c.new_value == {"a": 1} and [e.op_index for e in c.errors] == [1]
    with pytest.raises(UpdateRejectedError) as info:
        decide_update(Update("s", "k", [IncrementOp("a", 1)]), state({"a": "x"}), 1 << 20)
    assert info.value.errors[0]["code"] == "increment.not_number"
    with pytest.raises(UpdateRejectedError):
        decide_update(Update("s", "k", []), None, 1 << 20)


def test_update_result_over_size_limit() -> None:
    with pytest.raises(ValueTooLargeError):
        decide_update(Update("s", "k", [SetOp("a", "x" * 100)]), None, 50)


@pytest.mark.parametrize("bad", ["", "a/b", "x\x00", "tab\there", "\x7f", "é" * 257, 5, None, "\ud800",
                                 "a\u2028b", "\ufeffx", "a\u200bb", "x\u202ey", "a\u2066b"])
def test_bad_scopes(bad: object) -> None:
    with pytest.raises(InvalidNameError):
        validate_scope(bad)


def test_keys_may_hold_slashes_but_not_controls() -> None:
    assert validate_key("user/1") == "user/1"
    assert validate_key("family \U0001f468\u200d\U0001f469\u200d\U0001f467")  # emoji need ZWJ
    assert validate_key("ü" * 1024)
    for bad in ["", "k" * 1025, "a\nb", "\x00"]:
        with pytest.raises(InvalidNameError):
            validate_key(bad)


@pytest.mark.parametrize("bad", [None, math.nan, {"a": math.inf}, [2**63], {1: "x"}, {"s": {1, 2}}, object()])
def test_bad_values(bad: object) -> None:
    with pytest.raises(InvalidValueError):
        encode_value(bad)


def test_value_size_limit() -> None:
    assert encode_value("x" * 10, 12) == b'"xxxxxxxxxx"'
    with pytest.raises(ValueTooLargeError):
        encode_value("x" * 11, 12)


def test_good_values() -> None:
    assert encode_value({"a": [1, 2.5, True, None, "é"], "b": -(2**63)}) == (
        '{"a":[1,2.5,true,null,"é"],"b":-9223372036854775808}'.encode()
    )
