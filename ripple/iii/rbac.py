"""The rules of the RBAC worker port (``--iii-rbac-port``): which functions a session may call, how its registrations
are named, and what its auth function may answer. Pure: no I/O (:mod:`ripple.iii.sessions` runs the auth function and
the registration hooks; the engine applies these rules).

The iii engine's second ``iii-worker-manager`` with an ``rbac`` block is the model: every connection is a *session*
whose rights come from an auth function (a worker function of the operator's) and from the port's
``expose_functions`` filters. Ripple adds its tokens as a second source of identity (docs/iii.md, "The RBAC worker
port"): a session opened with a ripple token reaches ripple's data functions (``state::*``, ``stream::*``) within
that token's grants, which the store checks as it checks every other caller.

A call from a session is allowed when, in this order:

1. the function is in the session's ``forbidden_functions`` → **no**;
2. it is in ``allowed_functions`` → yes;
3. it is one of :data:`INFRASTRUCTURE` (the engine's fixed carve-out: logging, worker metadata, channels) → yes;
4. the session has a ripple token and the function is one of ripple's data built-ins → yes (the grants decide);
5. an ``expose_functions`` filter matches its id or its metadata → yes;
6. otherwise → no (``FORBIDDEN``).
"""

from __future__ import annotations

import json
import re
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

import msgspec

from ripple.auth.grants import Identity
from ripple.iii.protocol import FORBIDDEN, IIIError

INFRASTRUCTURE = frozenset({
    "engine::channels::create",
    "engine::workers::register",
    "engine::log::info",
    "engine::log::warn",
    "engine::log::error",
    "engine::log::debug",
    "engine::log::trace",
    "engine::baggage::get",
    "engine::baggage::set",
    "engine::baggage::get_all",
})
"""Always callable from a session unless its auth result forbids them by name (as in the engine)."""

DATA_PREFIXES = ("state::", "stream::")
"""Ripple's built-ins whose every read and write the store checks against the caller's grants."""


# ---- filters --------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if part == "*" else re.escape(part) for part in re.split(r"(\*)", pattern)),
                      re.DOTALL)


def wildcard_match(pattern: str, value: str) -> bool:
    """iii's patterns: ``*`` is any run of characters (also none), everything else is literal, anchored both ends."""
    return _wildcard(pattern).fullmatch(value) is not None


_MATCH = re.compile(r"""^\s*match\((?:"(.*)"|'(.*)')\)\s*$""", re.DOTALL)


def _match_pattern(text: str) -> str | None:
    found = _MATCH.match(text)
    return None if found is None else (found.group(1) if found.group(1) is not None else found.group(2))


def _same_json(a: Any, b: Any) -> bool:
    """JSON equality: ``true`` is not ``1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return bool(type(a) is type(b) or (isinstance(a, int | float) and isinstance(b, int | float))) and a == b


class FunctionFilter(msgspec.Struct, frozen=True):
    """One ``expose_functions`` entry: a function id pattern, or metadata every key of which must match (a value
    written ``match("…")`` is a pattern for a string; any other value must be equal)."""

    pattern: str | None = None
    metadata: dict[str, Any] | None = None

    def matches(self, function_id: str, metadata: Any) -> bool:
        if self.pattern is not None:
            return wildcard_match(self.pattern, function_id)
        if not isinstance(metadata, dict) or not self.metadata:
            return False
        return all(key in metadata and _value_matches(want, metadata[key]) for key, want in self.metadata.items())

    def __str__(self) -> str:
        if self.pattern is not None:
            return f'match("{self.pattern}")'
        return json.dumps({"metadata": self.metadata}, separators=(",", ":"))


def _value_matches(want: Any, value: Any) -> bool:
    pattern = _match_pattern(want) if isinstance(want, str) else None
    if pattern is not None:
        return isinstance(value, str) and wildcard_match(pattern, value)
    return _same_json(want, value)


def parse_filter(text: str) -> FunctionFilter:
    """``match("api::*")`` (or ``match('…')``, or the bare pattern ``api::*``), or a JSON object
    ``{"metadata": {"public": true}}``. Raises ``ValueError`` saying what is wrong."""
    stripped = text.strip()
    if not stripped:
        raise ValueError("an expose filter is match(\"PATTERN\") or {\"metadata\": {...}}, not an empty string")
    if stripped.startswith("{"):
        try:
            raw = json.loads(stripped)
        except ValueError as exc:
            raise ValueError(f"expose filter {text!r} is not valid JSON: {exc}") from None
        metadata = raw.get("metadata") if isinstance(raw, dict) else None
        if not isinstance(metadata, dict) or not metadata or set(raw) != {"metadata"}:
            raise ValueError(f"a JSON expose filter is {{\"metadata\": {{KEY: VALUE, ...}}}} with at least one key, "
                             f"not {text!r}")
        return FunctionFilter(metadata=metadata)
    pattern = _match_pattern(stripped)
    return FunctionFilter(pattern=stripped if pattern is None else pattern)


# ---- the port's configuration and a session's rights ---------------------------------------------------------------


class RbacConfig(msgspec.Struct, frozen=True):
    """The engine's ``rbac`` block and the listener's ``middleware_function_id`` (function ids of workers)."""

    auth_function_id: str | None = None
    expose_functions: tuple[FunctionFilter, ...] = ()
    middleware_function_id: str | None = None
    on_function_registration_function_id: str | None = None
    on_trigger_registration_function_id: str | None = None
    on_trigger_type_registration_function_id: str | None = None

    def own_functions(self) -> frozenset[str]:
        """The ids this port calls to decide for its sessions (auth function, middleware, registration hooks): only a
        worker of the main port may provide them; a session that registers one is refused."""
        return frozenset(f for f in (self.auth_function_id, self.middleware_function_id,
                                     self.on_function_registration_function_id,
                                     self.on_trigger_registration_function_id,
                                     self.on_trigger_type_registration_function_id) if f is not None)


class RbacPort(msgspec.Struct, frozen=True):
    """The RBAC worker port: where it listens (``host`` ``None``: the other iii ports' host) and its rules."""

    port: int = 49135
    config: RbacConfig = RbacConfig()
    host: str | None = None


class AuthResult(msgspec.Struct, frozen=True):
    """What an auth function answers (iii's ``AuthResult``; absent fields take the engine's defaults)."""

    allowed_functions: list[str] = msgspec.field(default_factory=list)
    forbidden_functions: list[str] = msgspec.field(default_factory=list)
    allowed_trigger_types: list[str] | None = None
    allow_trigger_type_registration: bool = False
    allow_function_registration: bool = True
    context: dict[str, Any] = msgspec.field(default_factory=dict)
    function_registration_prefix: str | None = None


def parse_auth_result(value: Any) -> AuthResult:
    """An auth function's answer; raises ``ValueError`` (no answer, or not an ``AuthResult``)."""
    if value is None or value is msgspec.UNSET:
        raise ValueError("auth function returned no result")
    if isinstance(value, dict):  # a null field is an absent one (pydantic's model_dump() writes them)
        value = {k: v for k, v in value.items() if v is not None}
    try:
        return msgspec.convert(value, AuthResult)
    except msgspec.ValidationError as exc:
        raise ValueError(f"auth function returned an invalid AuthResult: {exc}") from None


def default_auth(identity: Identity | None) -> AuthResult:
    """A session's rights when the port has no auth function; ``expose_functions`` gates its calls. With a ripple
    token it may register functions, triggers and trigger types only when the token is a worker token (``--worker``
    or ``--admin``, what the main worker port takes): any other token only calls, so a read-only token cannot
    publish a route on the public HTTP-trigger port. Without ``--auth`` (no identity) the engine's defaults hold:
    registrations allowed. The token's name is the context for the middleware and hooks."""
    registers = identity is None or identity.worker
    return AuthResult(allow_function_registration=registers, allowed_trigger_types=None if registers else [],
                      allow_trigger_type_registration=registers,
                      context={} if identity is None else {"token": identity.name})


class Session(msgspec.Struct, frozen=True):
    """One connection to the RBAC port: the port's rules, what its auth function granted, and the ripple token it
    presented (``token``: its name, or ``None``)."""

    config: RbacConfig
    auth: AuthResult
    token: str | None = None

    def may_call(self, function_id: str, metadata: Any = None, *, data_builtin: bool = False) -> bool:
        if function_id in self.auth.forbidden_functions:
            return False
        if function_id in self.auth.allowed_functions or function_id in INFRASTRUCTURE:
            return True
        if self.token is not None and data_builtin:
            return True
        return any(f.matches(function_id, metadata) for f in self.config.expose_functions)

    def refusal(self, function_id: str) -> IIIError:
        """The engine's ``FORBIDDEN`` error body, with its remediation (and ripple's flag for it)."""
        if function_id in self.auth.forbidden_functions:
            remedy = "remove from rbac.forbidden_functions"
        else:
            remedy = "add to rbac.expose_functions: --iii-rbac-expose"
        return IIIError(FORBIDDEN, f"function '{function_id}' not allowed ({remedy})")

    def may_use_trigger_type(self, trigger_type: str) -> bool:
        allowed = self.auth.allowed_trigger_types
        return allowed is None or trigger_type in allowed

    def registered_id(self, function_id: str) -> str:
        """The id a function this session registers is known by (``function_registration_prefix``)."""
        prefix = self.auth.function_registration_prefix
        return function_id if not prefix else f"{prefix}::{function_id}"

    def wire_id(self, function_id: str) -> str:
        """The id to send this session's worker when calling one of its functions: without the prefix."""
        prefix = self.auth.function_registration_prefix
        return function_id.removeprefix(f"{prefix}::") if prefix else function_id


def is_data_builtin(function_id: str, builtins: Any) -> bool:
    return function_id in builtins and function_id.startswith(DATA_PREFIXES)


current_session: ContextVar[Session | None] = ContextVar("ripple_iii_session", default=None)
"""The RBAC session the current call comes from (set for the whole connection, as ``acting_as`` is): the engine's
own functions that answer differently per session (``engine::functions::list``, ``engine::register_trigger``)."""
