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
# The deepest nesting of arrays and objects a value may have (a scalar is depth 0, ``[]`` and ``{}`` depth 1), the same
# at every entrance (embedded API, REST, iii, import). Far below what any reader needs (JSON decoders and Python's
# recursion limit give up near 1,000 levels), so an accepted value is readable by every reader (DESIGN §15).
MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder().decode
# Refused in names (DESIGN §2, §15): control characters (C0, C1), lone surrogates, line and paragraph separators,
# interlinear annotation marks, and every Unicode Default_Ignorable_Code_Point (DerivedCoreProperties.txt) — code
# points that render as nothing, so two names that look identical could differ. Four default-ignorables stay,
# because ordinary text needs them: ZWNJ and ZWJ (U+200C, U+200D: scripts and emoji sequences) and the emoji
# variation selectors U+FE0E, U+FE0F (text/emoji presentation). docs/security.md lists the same ranges.
REFUSED_NAME_RANGES: tuple[tuple[int, int], ...] = (
    (0x0000, 0x001F), (0x007F, 0x009F),  # C0, DEL, C1
    (0x00AD, 0x00AD),  # soft hyphen
    (0x034F, 0x034F),  # combining grapheme joiner
    (0x061C, 0x061C),  # Arabic letter mark
    (0x115F, 0x1160),  # Hangul choseong/jungseong fillers
    (0x17B4, 0x17B5),  # Khmer inherent vowels
    (0x180B, 0x180F),  # Mongolian free variation selectors, vowel separator
    (0x200B, 0x200B),  # zero width space (U+200C ZWNJ, U+200D ZWJ stay)
    (0x200E, 0x200F),  # LRM, RLM
    (0x2028, 0x202E),  # line/paragraph separators, bidi embeddings and overrides
    (0x2060, 0x206F),  # word joiner, invisible operators, bidi isolates, deprecated format characters
    (0x3164, 0x3164),  # Hangul filler
    (0xD800, 0xDFFF),  # lone surrogates
    (0xFE00, 0xFE0D),  # variation selectors 1-14 (U+FE0E, U+FE0F stay: emoji presentation)
    (0xFEFF, 0xFEFF),  # BOM / zero width no-break space
    (0xFFA0, 0xFFA0),  # halfwidth Hangul filler
    (0xFFF0, 0xFFFB),  # unassigned specials, interlinear annotation marks
    (0x1BCA0, 0x1BCA3),  # shorthand format controls
    (0x1D173, 0x1D17A),  # musical symbol format controls
    (0xE0000, 0xE0FFF),  # tags, variation selectors supplement, reserved
)
_CONTROL = re.compile("[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in REFUSED_NAME_RANGES) + "]")
_LONG_NUMBER = re.compile(rb"\d{19}")


def _bad_char(name: str) -> str | None:
    found = _CONTROL.search(name)
    if found is None:
        return None
    code = ord(found.group())
    if 0xD800 <= code <= 0xDFFF:
        return f"lone surrogate U+{code:04X}"
    return f"U+{code:04X}" if code < 0xA0 else f"invisible character U+{code:04X}"


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


def check_depth(value: Any, what: str = "value") -> None:
    """Raise :class:`InvalidValueError` if ``value`` nests arrays and objects deeper than :data:`MAX_DEPTH`."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if type(v) is dict:
            children: Any = v.values()
        elif type(v) is list or type(v) is tuple:
            children = v
        else:
            continue
        if depth + 1 > MAX_DEPTH:
            raise InvalidValueError(
                f"{what} nests arrays and objects deeper than {MAX_DEPTH} levels",
                detail={"max_depth": MAX_DEPTH},
            )
        stack.extend((child, depth + 1) for child in children)


def check_raw_depth(raw: bytes, value: Any, what: str = "value") -> None:
    """:func:`check_depth` with a fast path: a JSON text holding at most :data:`MAX_DEPTH` brackets and braces in all
    (counting those inside strings too) cannot nest deeper, so most values are never walked."""
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH:
        check_depth(value, what)


def encode_value(value: Any, max_bytes: int = DEFAULT_MAX_VALUE_BYTES, *, what: str = "value") -> bytes:
    """Validate a stored value and return its compact JSON. A top-level ``null`` is refused (use delete)."""
    if value is None:
        raise InvalidValueError(f"{what} must not be null (use delete to remove a key)")
    try:
        raw = _encode(value)
    except RecursionError:
        check_depth(value, what)  # deeper than any encoder goes: raises
        raise
    except (UnicodeEncodeError, TypeError, OverflowError) as exc:
        check_depth(value, what)
        _check_json(value, "$")  # names the offending path when it can
        raise InvalidValueError(f"{what} is not valid JSON: {exc}") from None
    check_raw_depth(raw, value, what)  # first: the round trip below recurses as deep as the value
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
