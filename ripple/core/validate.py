"""Validation of names and values (DESIGN §2). Pure; raises :mod:`ripple.errors` subclasses."""

from __future__ import annotations

import math
import re
from typing import Any

import msgspec

from ripple.errors import InvalidNameError, InvalidValueError, ValueTooLargeError

MAX_SCOPE_CHARS = 256
MAX_KEY_CHARS = 1024
DEFAULT_MAX_VALUE_BYTES = 1024 * 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
# Control characters (C0, C1), lone surrogates, and invisible characters that make two names look identical or
# reorder text on screen: zero-width space, LRM/RLM, line and paragraph separators, bidi embeddings, overrides and
# isolates, word joiner and invisible operators, the BOM. ZWJ/ZWNJ (U+200C/D) stay: emoji and scripts need them.
_CONTROL = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\u200b\u200e\u200f\u2028-\u202e\u2060-\u2064\u2066-\u2069\ufeff\ufff9-\ufffb]"
)
_LONG_NUMBER = re.compile(rb"\d{19}")


def _bad_char(name: str) -> str | None:
    found = _CONTROL.search(name)
    if found is None:
        return None
    code = ord(found.group())
    if 0xD800 <= code <= 0xDFFF:
        return f"lone surrogate U+{code:04X}"
    return f"U+{code:04X}" if code < 0x200B else f"invisible character U+{code:04X}"


def validate_name(what: str, name: object, max_chars: int, *, allow_slash: bool) -> str:
    if not isinstance(name, str):
        raise InvalidNameError(
            f"{what} must be a string, not {type(name).__name__}", detail={what: repr(name)}
        )
    if not 1 <= len(name) <= max_chars:
        raise InvalidNameError(
            f"{what} must be 1-{max_chars} characters, got {len(name)}", detail={what: name[:64]}
        )
    if not allow_slash and "/" in name:
        raise InvalidNameError(f"{what} must not contain '/': {name!r}", detail={what: name})
    bad = _bad_char(name)
    if bad is not None:
        raise InvalidNameError(
            f"{what} contains a control or invisible character ({bad})",
            detail={what: name.encode("utf-8", "backslashreplace").decode()},
        )
    return name


def validate_scope(scope: object) -> str:
    return validate_name("scope", scope, MAX_SCOPE_CHARS, allow_slash=False)


def validate_key(key: object) -> str:
    return validate_name("key", key, MAX_KEY_CHARS, allow_slash=True)


def _check_json(value: Any, where: str) -> None:
    """Reject what JSON cannot hold faithfully: non-finite floats, ints beyond int64, non-string keys, other types."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        v, path = stack.pop()
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is int:
            if not INT64_MIN <= v <= INT64_MAX:
                raise InvalidValueError(
                    f"integer at {path} is outside the 64-bit range", detail={"path": path}
                )
        elif t is float:
            if not math.isfinite(v):
                raise InvalidValueError(f"number at {path} is not finite", detail={"path": path})
        elif t is dict:
            for k, child in v.items():
                if type(k) is not str:
                    raise InvalidValueError(
                        f"object key {k!r} at {path} is not a string", detail={"path": path}
                    )
                stack.append((child, f"{path}.{k}"))
        elif t is list or t is tuple:
            stack.extend((child, f"{path}[{i}]") for i, child in enumerate(v))
        else:
            raise InvalidValueError(f"value at {path} is not JSON ({t.__name__})", detail={"path": path})


def encode_value(value: Any, max_bytes: int = DEFAULT_MAX_VALUE_BYTES, *, what: str = "value") -> bytes:
    """Validate a stored value and return its compact JSON. A top-level ``null`` is refused (use delete)."""
    if value is None:
        raise InvalidValueError(f"{what} must not be null (use delete to remove a key)")
    try:
        raw = _encode(value)
    except (UnicodeEncodeError, TypeError, OverflowError) as exc:
        _check_json(value, "$")  # names the offending path when it can
        raise InvalidValueError(f"{what} is not valid JSON: {exc}") from None
    # Fast path: a value that survives a JSON round trip unchanged and holds no huge integer is plain JSON.
    # msgspec would silently turn NaN into null, int keys into strings and datetimes into strings: the round
    # trip catches those, and the walk then names the problem.
    if _LONG_NUMBER.search(raw) is not None or _decode(raw) != value:
        _check_json(value, "$")
    if len(raw) > max_bytes:
        raise ValueTooLargeError(
            f"{what} is {len(raw)} bytes of JSON, over the limit of {max_bytes}",
            detail={"size": len(raw), "limit": max_bytes},
        )
    return raw


def encode_data(value: Any, max_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> bytes:
    """Like :func:`encode_value` but ``null`` is allowed (stream data)."""
    if value is None:
        return b"null"
    return encode_value(value, max_bytes, what="data")
