"""Who registered what: functions, triggers and HTTP routes per worker. Pure bookkeeping, no I/O.

Functions and triggers belong to the worker connection that registered them and go away with it (III-PROTOCOL §2.6).
A function id held by another live worker is refused (``registrationrejected``); a trigger id seen again replaces the
old registration, so an SDK's replay after a reconnect (same trigger ids) never duplicates a trigger.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from ripple.iii.protocol import (
    HttpTriggerConfig,
    IIIError,
    RegisterFunction,
    RegisterTrigger,
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


class TriggerEntry(msgspec.Struct):
    id: str
    trigger_type: str
    function_id: str
    config: TriggerConfig
    worker_id: str
    metadata: Any = None


class Registry:
    """Functions by id, triggers by id, and the HTTP routes the ``http`` triggers make."""

    def __init__(self, builtin_ids: frozenset[str] = frozenset()) -> None:
        self.builtin_ids = builtin_ids
        self.functions: dict[str, FunctionEntry] = {}
        self.triggers: dict[str, TriggerEntry] = {}

    # -- functions

    def add_function(self, worker_id: str, msg: RegisterFunction) -> RegistrationRejected | None:
        """Register (or re-register) a function; another live owner → a rejection to send back."""
        if msg.id in self.builtin_ids:
            return _rejected(msg.id, ENGINE_OWNER)
        current = self.functions.get(msg.id)
        if current is not None and current.worker_id != worker_id:
            return _rejected(msg.id, current.worker_id)
        self.functions[msg.id] = FunctionEntry(msg.id, worker_id, msg.description, msg.metadata)
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

    # -- triggers

    def add_trigger(self, worker_id: str, msg: RegisterTrigger) -> tuple[TriggerEntry, TriggerEntry | None]:
        """Register a trigger; returns ``(new, replaced)``. Raises :class:`IIIError` (bad config, route conflict)."""
        config = parse_trigger_config(msg.trigger_type, msg.config)
        if isinstance(config, HttpTriggerConfig):
            clash = self._route_clash(msg.id, config)
            if clash is not None:
                raise IIIError(
                    "trigger_registration_failed",
                    f"route {config.http_method} {config.api_path} conflicts with trigger {clash.id} "
                    f"({clash.function_id})",
                )
        entry = TriggerEntry(msg.id, msg.trigger_type, msg.function_id, config, worker_id, msg.metadata)
        replaced = self.triggers.get(msg.id)
        self.triggers[msg.id] = entry
        return entry, replaced

    def _route_clash(self, trigger_id: str, config: HttpTriggerConfig) -> TriggerEntry | None:
        shape = route_shape(config.api_path)
        for other in self.triggers.values():
            c = other.config
            if (
                other.id != trigger_id
                and isinstance(c, HttpTriggerConfig)
                and c.http_method == config.http_method
                and route_shape(c.api_path) == shape
            ):
                return other
        return None

    def remove_trigger(self, worker_id: str, trigger_id: str) -> TriggerEntry | None:
        current = self.triggers.get(trigger_id)
        if current is None or current.worker_id != worker_id:
            return None
        del self.triggers[trigger_id]
        return current

    def of_type(self, trigger_type: str) -> Iterator[TriggerEntry]:
        return (t for t in self.triggers.values() if t.trigger_type == trigger_type)

    # -- workers

    def drop_worker(self, worker_id: str) -> tuple[list[str], list[TriggerEntry]]:
        """Forget everything a worker registered; returns the function ids and triggers removed."""
        functions = [f for f, e in self.functions.items() if e.worker_id == worker_id]
        for f in functions:
            del self.functions[f]
        triggers = [t for t in self.triggers.values() if t.worker_id == worker_id]
        for t in triggers:
            del self.triggers[t.id]
        return functions, triggers

    # -- routes

    def route(self, method: str, path: str) -> tuple[TriggerEntry, dict[str, str]] | None:
        """The ``http`` trigger for a request, the most literal pattern first."""
        best: tuple[int, TriggerEntry, dict[str, str]] | None = None
        for entry in self.of_type("http"):
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
