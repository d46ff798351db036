"""The engine's own functions, in the shapes of the current engine (0.22): ``engine::functions::list``,
``engine::triggers::list`` (trigger *types*), ``engine::registered-triggers::list`` (trigger instances),
``engine::workers::list``/``register``, ``engine::register_trigger``/``unregister_trigger``, the
``engine::functions-available`` / ``engine::workers-available`` trigger types, and the observability functions of the
RBAC carve-out (``engine::log::*`` into ripple's log, ``engine::baggage::*``, which have no ambient baggage to read).

Called from an RBAC session (:data:`ripple.iii.rbac.current_session`), ``engine::functions::list`` lists only what the
session may call, and ``engine::register_trigger`` keeps to its trigger types and function prefix, as in the engine.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from ripple.iii.protocol import (
    FORBIDDEN,
    FUNCTIONS_AVAILABLE,
    WORKERS_AVAILABLE,
    IIIError,
    RegisterTrigger,
    parse_input,
)
from ripple.iii.rbac import current_session, is_data_builtin

if TYPE_CHECKING:
    from ripple.iii.engine import Builtin, Engine
    from ripple.iii.registry import TriggerEntry

log = logging.getLogger("ripple.iii")
worker_log = logging.getLogger("ripple.iii.worker")  # engine::log::* from workers
LOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "error": logging.ERROR}

RIPPLE_WORKER = "ripple"  # the worker name ripple's own functions and trigger types are listed under
FUNCTIONS_SETTLE = 0.2  # seconds: a burst of registrations fires engine::functions-available once
CONFIG_SUMMARY_CHARS = 120
CALLER = "_caller_worker_id"  # added to the object data of a worker's calls, as the engine does


class ListInput(msgspec.Struct, frozen=True):
    include_internal: bool | None = None
    prefix: str | None = None
    worker: str | None = None
    search: str | None = None
    trigger_type: str | None = None
    function_id: str | None = None


class LogInput(msgspec.Struct, frozen=True):
    message: str
    data: Any = None
    trace_id: str | None = None
    span_id: str | None = None
    service_name: str | None = None


class BaggageKeyInput(msgspec.Struct, frozen=True):
    key: str
    value: str | None = None


class RegisterTriggerInput(msgspec.Struct, frozen=True):
    trigger_type: str
    function_id: str
    config: Any = None
    metadata: Any = None


class UnregisterTriggerInput(msgspec.Struct, frozen=True):
    id: str
    trigger_type: str | None = None


def _matches(search: str | None, *fields: str | None) -> bool:
    if not search:
        return True
    needle = search.lower()
    return any(needle in (f or "").lower() for f in fields)


class Introspection:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._functions_timer: asyncio.TimerHandle | None = None

    def builtins(self) -> dict[str, Builtin]:
        return {
            "engine::functions::list": self.functions_list,
            "engine::triggers::list": self.triggers_list,
            "engine::registered-triggers::list": self.registered_triggers_list,
            "engine::workers::list": self.workers_list,
            "engine::workers::register": self.workers_register,
            "engine::register_trigger": self.register_trigger,
            "engine::unregister_trigger": self.unregister_trigger,
            **{f"engine::log::{level}": self._logger(level) for level in LOG_LEVELS},
            "engine::baggage::get": self.baggage_get,
            "engine::baggage::set": self.baggage_set,
            "engine::baggage::get_all": self.baggage_get_all,
        }

    # -- names

    def worker_name(self, worker_id: str | None) -> str:
        if worker_id is None:
            return RIPPLE_WORKER
        worker = self.engine.workers.get(worker_id)
        name = worker.info.get("name") if worker is not None else None
        return name if isinstance(name, str) and name else worker_id

    def function_worker(self, function_id: str) -> str:
        return (
            self.worker_name(self.engine.registry.owner(function_id))
            if function_id not in self.engine.builtins
            else RIPPLE_WORKER
        )

    # -- lists

    async def functions_list(self, data: Any) -> Any:
        inp = _list_input("engine::functions::list", data)
        rows: list[dict[str, Any]] = [{"function_id": f, "worker_name": RIPPLE_WORKER} for f in self.engine.builtins]
        for entry in self.engine.registry.functions.values():
            row: dict[str, Any] = {"function_id": entry.id, "worker_name": self.worker_name(entry.worker_id)}
            if entry.description is not None:
                row["description"] = entry.description
            if entry.metadata is not None:
                row["metadata"] = entry.metadata
            rows.append(row)
        if not inp.include_internal:
            rows = [r for r in rows if not _internal_function(r)]
        session = current_session.get()
        if session is not None:  # an RBAC session sees what it may call
            builtins = self.engine.builtins
            rows = [r for r in rows if session.may_call(r["function_id"], r.get("metadata"),
                                                        data_builtin=is_data_builtin(r["function_id"], builtins))]
        rows = [
            r
            for r in rows
            if (inp.prefix is None or r["function_id"].startswith(inp.prefix))
            and (inp.worker is None or r["worker_name"] == inp.worker)
            and _matches(inp.search, r["function_id"], r.get("description"))
        ]
        return {"functions": sorted(rows, key=lambda r: r["function_id"])}

    async def triggers_list(self, data: Any) -> Any:
        """Trigger *types* (the engine's current meaning), not instances."""
        inp = _list_input("engine::triggers::list", data)
        rows = [
            {"id": t.id, "worker_name": self.worker_name(t.worker_id), "description": t.description}
            for t in self.engine.registry.trigger_types.values()
        ]
        rows = [
            r
            for r in rows
            if (inp.include_internal or not r["id"].startswith("engine::"))
            and (inp.prefix is None or r["id"].startswith(inp.prefix))
            and (inp.worker is None or r["worker_name"] == inp.worker)
            and _matches(inp.search, r["id"], r["description"])
        ]
        return {"triggers": sorted(rows, key=lambda r: r["id"])}

    async def registered_triggers_list(self, data: Any) -> Any:
        inp = _list_input("engine::registered-triggers::list", data)
        rows = [self._trigger_row(t) for t in self.engine.registry.triggers.values()]
        rows = [
            r
            for r in rows
            if (inp.include_internal or not r["function_id"].startswith("engine::"))
            and (inp.trigger_type is None or r["trigger_type"] == inp.trigger_type)
            and (inp.function_id is None or r["function_id"] == inp.function_id)
            and (inp.worker is None or r["worker_name"] == inp.worker)
            and _matches(inp.search, r["id"], r["trigger_type"], r["function_id"])
        ]
        return {"registered_triggers": sorted(rows, key=lambda r: r["id"])}

    def _trigger_row(self, entry: TriggerEntry) -> dict[str, Any]:
        config = entry.raw_config if entry.raw_config is not None else {}
        summary = msgspec.json.encode(config).decode()
        if len(summary) > CONFIG_SUMMARY_CHARS:
            summary = summary[: CONFIG_SUMMARY_CHARS - 1] + "…"
        return {
            "id": entry.id,
            "trigger_type": entry.trigger_type,
            "function_id": entry.function_id,
            "worker_name": self.worker_name(entry.worker_id),
            "config": config,
            "config_summary": summary,
        }

    async def workers_list(self, data: Any) -> Any:
        return {"workers": [self._worker_row(w.id) for w in self.engine.workers.values()]}

    def _worker_row(self, worker_id: str) -> dict[str, Any]:
        worker = self.engine.workers[worker_id]
        info = worker.info
        return {
            "name": info.get("name"),
            "description": info.get("description"),
            "version": info.get("version"),
            "id": worker.id,
            "runtime": info.get("runtime"),
            "os": info.get("os"),
            "status": "connected",
            "function_count": sum(1 for e in self.engine.registry.functions.values() if e.worker_id == worker.id),
            "connected_at_ms": worker.connected_at,
            "active_invocations": len(worker.pending),
            "isolation": info.get("isolation"),
            "ip_address": None,
        }

    # -- workers

    async def workers_register(self, data: Any) -> Any:
        """The SDK's metadata call (III-PROTOCOL §2.2): kept for ``engine::workers::list``."""
        caller = data.get(CALLER) if isinstance(data, dict) else None
        worker = self.engine.workers.get(caller) if isinstance(caller, str) else None
        if worker is not None:
            worker.info = {k: v for k, v in data.items() if k != CALLER}
            self.worker_event("worker_metadata_updated", worker.id)
        return {"success": True}

    def worker_event(self, event: str, worker_id: str) -> None:
        """Fire ``engine::workers-available`` (connect, disconnect, metadata)."""
        self.fire(WORKERS_AVAILABLE, {"event": event, "worker_id": worker_id})

    def functions_changed(self) -> None:
        """Functions came or went: fire ``engine::functions-available`` once the burst settles."""
        if self._functions_timer is not None:
            self._functions_timer.cancel()
        loop = asyncio.get_running_loop()
        self._functions_timer = loop.call_later(FUNCTIONS_SETTLE, self._fire_functions)

    def _fire_functions(self) -> None:
        self._functions_timer = None
        if not any(True for _ in self.engine.registry.of_type(FUNCTIONS_AVAILABLE)):
            return
        rows = [{"function_id": f, "worker_name": RIPPLE_WORKER} for f in sorted(self.engine.builtins)]
        rows += [
            {"function_id": e.id, "worker_name": self.worker_name(e.worker_id)}
            | ({"description": e.description} if e.description is not None else {})
            for e in self.engine.registry.functions.values()
        ]
        self.fire(FUNCTIONS_AVAILABLE, {"event": "functions_changed", "functions": rows})

    def fire(self, trigger_type: str, data: Any) -> None:
        for entry in list(self.engine.registry.of_type(trigger_type)):
            self.engine.spawn(self.engine.call_trigger(entry, data), name=f"iii-{trigger_type}")

    def close(self) -> None:
        if self._functions_timer is not None:
            self._functions_timer.cancel()

    # -- triggers registered through a function call (owned by no connection)

    async def register_trigger(self, data: Any) -> Any:
        inp: RegisterTriggerInput = parse_input("engine::register_trigger", data, RegisterTriggerInput)
        trigger_id = str(uuid.uuid4())
        function_id = inp.function_id
        session = current_session.get()
        if session is not None:
            if not session.may_use_trigger_type(inp.trigger_type):
                raise IIIError(FORBIDDEN, f"Trigger type '{inp.trigger_type}' is not allowed for this session.")
            function_id = session.registered_id(function_id)
        message = RegisterTrigger(trigger_id, inp.trigger_type, function_id, inp.config, inp.metadata)
        refused = await self.engine.register_trigger(None, message)
        if refused is not None:
            raise refused
        return {"id": trigger_id}

    async def unregister_trigger(self, data: Any) -> Any:
        inp: UnregisterTriggerInput = parse_input("engine::unregister_trigger", data, UnregisterTriggerInput)
        return {"removed": await self.engine.unregister_trigger(None, inp.id)}


    # -- observability (the RBAC carve-out's functions)

    @staticmethod
    def _logger(level: str) -> Builtin:
        async def write(data: Any) -> Any:
            inp: LogInput = parse_input(f"engine::log::{level}", _without_caller(data), LogInput)
            worker = inp.service_name or "worker"
            extra = {} if inp.data is None else {"data": inp.data}
            worker_log.log(LOG_LEVELS[level], "%s: %s", worker, inp.message, extra=extra)
            return msgspec.UNSET  # the engine answers nothing

        return write

    @staticmethod
    async def baggage_get(data: Any) -> Any:
        parse_input("engine::baggage::get", _without_caller(data), BaggageKeyInput)
        return {"value": None}  # ripple keeps no ambient OpenTelemetry baggage

    @staticmethod
    async def baggage_set(data: Any) -> Any:
        parse_input("engine::baggage::set", _without_caller(data), BaggageKeyInput)
        return {"success": True, "note": "Baggage set in new context. For propagation, use SDK-level baggage headers."}

    @staticmethod
    async def baggage_get_all(data: Any) -> Any:
        return {"baggage": {}}


def _without_caller(data: Any) -> Any:
    return {k: v for k, v in data.items() if k != CALLER} if isinstance(data, dict) else data


def _list_input(function_id: str, data: Any) -> ListInput:
    if data is None:
        return ListInput()
    result: ListInput = parse_input(function_id, _without_caller(data), ListInput)
    return result


def _internal_function(row: dict[str, Any]) -> bool:
    metadata = row.get("metadata")
    tagged = isinstance(metadata, dict) and metadata.get("internal") is True
    function_id: str = row["function_id"]
    return tagged or (function_id.startswith("engine::") and not function_id.startswith("engine::queue::"))
