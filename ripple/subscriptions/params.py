"""Query parameters of the subscription endpoints (DESIGN §7), parsed by hand. Pure: raises ``BadRequestError``.

They are read after the socket is accepted, so a bad query gets an ``error`` frame and close 1008 instead of the
HTTP 403 that a failed framework parameter would give. Unknown parameters are refused (catches typos).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

import msgspec

from ripple.core.events import KindFilter
from ripple.core.filter import Filter
from ripple.core.names import item_scope
from ripple.core.validate import validate_key, validate_name, validate_scope
from ripple.errors import BadRequestError, RippleError
from ripple.subscriptions.embedded import MAX_BATCH

SUBSCRIBE_PARAMS = ("scope", "key", "kind", "after", "snapshot", "batch", "token")
STREAM_PARAMS = ("after", "batch", "token")
REPEATABLE = ("scope", "key")
_INT = re.compile(r"[0-9]{1,19}")
_BOOL = {"true": True, "1": True, "false": False, "0": False}


class SubscribeParams(msgspec.Struct, frozen=True):
    filter: Filter
    after: int | None = None
    snapshot: bool = False
    batch: int | None = None


def check_query_names(names: Iterable[str], allowed: Iterable[str]) -> None:
    """Refuse a query parameter the endpoint does not take: a misspelt filter would otherwise read everything."""
    known = tuple(allowed)
    for name in names:
        if name not in known:
            raise BadRequestError(
                f"unknown query parameter {name!r} (allowed: {', '.join(known)})", detail={"parameter": name}
            )


def _split(query: bytes | str, allowed: tuple[str, ...]) -> dict[str, list[str]]:
    text = query.decode("latin-1") if isinstance(query, bytes) else query
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequestError(f"malformed query string: {exc}") from None
    check_query_names((name for name, _ in pairs), allowed)
    found: dict[str, list[str]] = {}
    for name, value in pairs:
        found.setdefault(name, []).append(value)
    for name, values in found.items():
        if len(values) > 1 and name not in REPEATABLE:
            raise BadRequestError(f"query parameter {name!r} given {len(values)} times", detail={"parameter": name})
    return found


def _int(name: str, text: str, low: int, high: int) -> int:
    if not _INT.fullmatch(text) or not low <= int(text) <= high:
        raise BadRequestError(f"{name} must be an integer from {low} to {high}, not {text!r}", detail={name: text[:64]})
    return int(text)


def _names(values: list[str], check: object) -> frozenset[str]:
    try:
        for v in values:
            check(v)  # type: ignore[operator]
    except RippleError as exc:
        raise BadRequestError(exc.message, detail=exc.detail) from None
    return frozenset(values)


def _common(found: dict[str, list[str]]) -> tuple[int | None, int | None]:
    after = _int("after", found["after"][0], 0, 2**63 - 1) if "after" in found else None
    batch = _int("batch", found["batch"][0], 1, MAX_BATCH) if "batch" in found else None
    return after, batch


def parse_subscribe(query: bytes | str) -> SubscribeParams:
    """``/v1/subscribe?scope=S&key=K&kind=state&after=N&snapshot=true&batch=100``."""
    found = _split(query, SUBSCRIBE_PARAMS)
    after, batch = _common(found)
    kind_text = found.get("kind", ["state"])[0]
    if kind_text not in ("state", "stream", "all"):
        raise BadRequestError(f"kind must be 'state', 'stream' or 'all', not {kind_text!r}", detail={"kind": kind_text})
    kind: KindFilter = kind_text  # type: ignore[assignment]
    snapshot_text = found.get("snapshot", ["false"])[0].lower()
    if snapshot_text not in _BOOL:
        raise BadRequestError(f"snapshot must be true or false, not {snapshot_text!r}")
    snapshot = _BOOL[snapshot_text]
    if snapshot and after is not None:
        raise BadRequestError("after and snapshot=true are mutually exclusive")
    scopes = _names(found.get("scope", []), validate_scope)
    keys = _names(found.get("key", []), validate_key)
    return SubscribeParams(Filter(kind, scopes, keys), after, snapshot, batch)


def parse_stream(stream: str, group: str, query: bytes | str) -> SubscribeParams:
    """``/v1/streams/{stream}/{group}?after=N&batch=100``: that stream group's events."""
    found = _split(query, STREAM_PARAMS)
    after, batch = _common(found)
    try:
        validate_name("stream", stream, 256, allow_slash=False)
        validate_name("group", group, 1024, allow_slash=True)
    except RippleError as exc:
        raise BadRequestError(exc.message, detail=exc.detail) from None
    try:
        items = frozenset([item_scope(stream, group)])  # the group's stored items (DESIGN §9, ripple.core.names)
    except ValueError:
        items = frozenset()  # names too long to hold items
    return SubscribeParams(Filter("stream", frozenset([stream]), frozenset([group]), items), after, False, batch)
