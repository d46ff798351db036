"""Who registered what: functions, trigger types, triggers and HTTP routes per worker. Pure bookkeeping, no I/O.

Functions and triggers belong to the worker connection that registered them and go away with it (III-PROTOCOL §2.6).
A function id held by another live worker is refused (``registrationrejected``); a trigger id seen again replaces the
old registration, so an SDK's replay after a reconnect (same trigger ids) never duplicates a trigger.

Trigger types are ripple's own (:data:`~ripple.iii.protocol.BUILTIN_TRIGGER_TYPES`) or provided by a worker
(``registertriggertype``). As in the current engine, a trigger whose type nobody provides yet is *pending*: it becomes
live when a worker registers the type, and goes back to pending when that provider disconnects.

HTTP routes follow the engine: a route is ``METHOD`` + path; registering the same route again moves it to the newer
trigger, and a route of the same shape with other parameter names is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import msgspec

from ripple.iii.protocol import (
    BUILTIN_TRIGGER_TYPES,
    HttpTriggerConfig,
    IIIError,
    ProvidedTriggerConfig,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    RegistrationRejected,
    TriggerConfig,
    match_route,
    parse_trigger_config,
    route_shape,
    route_specificity,
)

ENGINE_OWNER = "engine"


def _rejected(function_id: str, owner: str) -> RegistrationRejected:
    return RegistrationRejected("FUNCTION_NAMESPACE_CONFLICT", "default", function_id, owner)


class FunctionEntry(msgspec.Struct):
    id: str
    worker_id: str
    description: str | None = None
    metadata: Any = None
    request_format: Any = None
    response_format: Any = None
    invocation: Any = None  # an HTTP-invoked function: {url, method, timeout_ms, headers, auth}


class TriggerTypeEntry(msgspec.Struct):
    id: str
    description: str
    worker_id: str | None  # None: provided by ripple itself
    trigger_request_format: Any = None
    call_request_format: Any = None


class TriggerEntry(msgspec.Struct):
    id: str
    trigger_type: str
    function_id: str
    config: TriggerConfig
    worker_id: str | None  # None: registered through engine::register_trigger (owned by no connection)
    metadata: Any = None
    raw_config: Any = None  # the config as the worker sent it


Status = Literal["live", "pending"]


def route_key(method: str, path: str) -> str:
    return f"{method.upper()}:{path.strip('/')}"


class Registry:
    """Functions by id, trigger types by id, live and pending triggers by id, and the HTTP routes."""

    def __init__(self, builtin_ids: frozenset[str] = frozenset()) -> None:
        self.builtin_ids = builtin_ids
        self.functions: dict[str, FunctionEntry] = {}
        self.triggers: dict[str, TriggerEntry] = {}
        self.pending: dict[str, TriggerEntry] = {}
        self.trigger_types: dict[str, TriggerTypeEntry] = {
            name: TriggerTypeEntry(name, description, None) for name, (_, description) in BUILTIN_TRIGGER_TYPES.items()
        }
        self.routes: dict[str, str] = {}  # route key → trigger id

    # -- functions

    def add_function(self, worker_id: str, msg: RegisterFunction) -> RegistrationRejected | None:
        """Register (or re-register) a function; another live owner → a rejection to send back."""
        if msg.id in self.builtin_ids:
            return _rejected(msg.id, ENGINE_OWNER)
        current = self.functions.get(msg.id)
        if current is not None and current.worker_id != worker_id:
            return _rejected(msg.id, current.worker_id)
        self.functions[msg.id] = FunctionEntry(
            msg.id,
            worker_id,
            msg.description,
            msg.metadata,
            msg.request_format,
            msg.response_format,
            msg.invocation,
        )
        return None

    def remove_function(self, worker_id: str, function_id: str) -> bool:
        current = self.functions.get(function_id)
        if current is None or current.worker_id != worker_id:
            return False
        del self.functions[function_id]
        return True

    def owner(self, function_id: str) -> str | None:
        entry = self.functions.get(function_id)
        return None if entry is None else entry.worker_id

    # -- trigger types

    def add_trigger_type(self, worker_id: str, msg: RegisterTriggerType) -> list[TriggerEntry] | None:
        """A worker provides a trigger type. Returns the triggers to (re)send to it — the live ones of that type
        (a provider that reconnected) and the pending ones, which become live — or ``None`` when refused (ripple
        provides the type itself)."""
        current = self.trigger_types.get(msg.id)
        if current is not None and current.worker_id is None:
            return None
        self.trigger_types[msg.id] = TriggerTypeEntry(
            msg.id, msg.description or "", worker_id, msg.trigger_request_format, msg.call_request_format
        )
        waiting = [t for t in self.pending.values() if t.trigger_type == msg.id]
        for trigger in waiting:
            del self.pending[trigger.id]
            self.triggers[trigger.id] = trigger
        return [t for t in self.triggers.values() if t.trigger_type == msg.id]

    def provider(self, trigger_type: str) -> str | None:
        """The worker that provides a trigger type (``None``: ripple, or nobody)."""
        entry = self.trigger_types.get(trigger_type)
        return None if entry is None else entry.worker_id

    # -- triggers

    def add_trigger(
        self, worker_id: str | None, msg: RegisterTrigger
    ) -> tuple[TriggerEntry, TriggerEntry | None, Status]:
        """Register a trigger; returns ``(new, replaced, status)``. Raises :class:`IIIError` (bad config, route
        conflict); a refused registration leaves any previous one with that id in place."""
        config = parse_trigger_config(msg.trigger_type, msg.config)
        entry = TriggerEntry(
            msg.id, msg.trigger_type, msg.function_id, config, worker_id, msg.metadata, raw_config=msg.config
        )
        if isinstance(config, HttpTriggerConfig):
            self._check_route(msg.id, config, msg.config)
        replaced = self._forget(msg.id)
        if isinstance(config, ProvidedTriggerConfig) and msg.trigger_type not in self.trigger_types:
            self.pending[msg.id] = entry
            return entry, replaced, "pending"
        self.triggers[msg.id] = entry
        if isinstance(config, HttpTriggerConfig):
            self.routes[route_key(config.http_method, config.api_path)] = msg.id
        return entry, replaced, "live"

    def _check_route(self, trigger_id: str, config: HttpTriggerConfig, raw: Any) -> None:
        """The engine refuses a route whose shape another route already has under other parameter names."""
        key = route_key(config.http_method, config.api_path)
        shape = route_shape(config.api_path)
        for other_key, other_id in self.routes.items():
            other = self.triggers.get(other_id)
            if other is None or other_key == key or other_id == trigger_id:
                continue
            c = other.config
            if isinstance(c, HttpTriggerConfig) and c.http_method == config.http_method:
                if route_shape(c.api_path) == shape:
                    raise IIIError(
                        "trigger_registration_failed",
                        f"Route '{config.http_method} {_raw_path(raw, config)}' conflicts with already-registered "
                        f"route '{c.http_method} {_raw_path(other.raw_config, c)}': routes with identical structure "
                        "but different path-parameter names are not supported",
                    )

    def _forget(self, trigger_id: str) -> TriggerEntry | None:
        entry = self.triggers.pop(trigger_id, None) or self.pending.pop(trigger_id, None)
        if entry is not None and isinstance(entry.config, HttpTriggerConfig):
            key = route_key(entry.config.http_method, entry.config.api_path)
            if self.routes.get(key) == trigger_id:
                del self.routes[key]
        return entry

    def remove_trigger(self, worker_id: str | None, trigger_id: str) -> TriggerEntry | None:
        """Unregister a trigger (live or pending) of this owner; returns it, or ``None`` when it was not theirs."""
        current = self.triggers.get(trigger_id) or self.pending.get(trigger_id)
        if current is None or (worker_id is not None and current.worker_id != worker_id):
            return None
        self._forget(trigger_id)
        return current

    def park(self, trigger_id: str) -> TriggerEntry | None:
        """Move a live trigger back to pending (its provider refused it)."""
        entry = self.triggers.pop(trigger_id, None)
        if entry is not None:
            self.pending[trigger_id] = entry
        return entry

    def of_type(self, trigger_type: str) -> Iterator[TriggerEntry]:
        return (t for t in self.triggers.values() if t.trigger_type == trigger_type)

    # -- workers

    def drop_worker(self, worker_id: str) -> tuple[list[str], list[TriggerEntry], list[TriggerEntry]]:
        """Forget everything a worker registered. Returns the function ids removed, the triggers removed, and the
        other workers' triggers that went back to pending because this worker provided their type."""
        functions = [f for f, e in self.functions.items() if e.worker_id == worker_id]
        for f in functions:
            del self.functions[f]
        triggers = [t for t in (*self.triggers.values(), *self.pending.values()) if t.worker_id == worker_id]
        for t in triggers:
            self._forget(t.id)
        types = [t.id for t in self.trigger_types.values() if t.worker_id == worker_id]
        orphaned = [t for t in self.triggers.values() if t.trigger_type in types]
        for trigger_type in types:
            del self.trigger_types[trigger_type]
        for t in orphaned:
            self.park(t.id)
        return functions, triggers, orphaned

    # -- routes

    def route(self, method: str, path: str) -> tuple[TriggerEntry, dict[str, str]] | None:
        """The ``http`` trigger for a request, the most literal pattern first."""
        best: tuple[int, TriggerEntry, dict[str, str]] | None = None
        for trigger_id in self.routes.values():
            entry = self.triggers.get(trigger_id)
            if entry is None:
                continue
            config = entry.config
            assert isinstance(config, HttpTriggerConfig)
            if config.http_method != method:
                continue
            params = match_route(config.api_path, path)
            if params is None:
                continue
            rank = route_specificity(config.api_path)
            if best is None or rank > best[0]:
                best = (rank, entry, params)
        return None if best is None else (best[1], best[2])


def _raw_path(raw: Any, config: HttpTriggerConfig) -> str:
    path = raw.get("api_path") if isinstance(raw, dict) else None
    return path if isinstance(path, str) else config.api_path
