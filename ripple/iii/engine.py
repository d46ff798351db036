"""The iii engine on top of a Store: built-in functions, calls between workers, and trigger fan-out.

No sockets here: a :class:`Worker` is given a ``send`` coroutine by the network layer (``ripple/iii/server.py``), and
HTTP requests arrive as plain values (``ripple/iii/http.py``). Triggers run after the write, off the writer's path:
each trigger follows the log with its own :class:`TriggerPump` and delivers events in offset order (falling back to
reading the log if it falls behind, so nothing is dropped while the worker is connected).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ripple.auth.context import current_identity
from ripple.core.events import Event, Meta
from ripple.core.filter import Filter
from ripple.core.names import is_item_scope, item_scope
from ripple.errors import (
    CascadeLimitError,
    ForbiddenError,
    InvalidOpError,
    RippleError,
    StoreClosedError,
    UpdateRejectedError,
    ValueTooLargeError,
)
from ripple.iii import sessions
from ripple.iii.auth import trigger_refusal
from ripple.iii.channels import Channels
from ripple.iii.cronjobs import CronJob
from ripple.iii.httpfn import HttpFunctions, parse_invocation
from ripple.iii.introspect import CALLER, Introspection
from ripple.iii.items import StreamItems
from ripple.iii.protocol import (
    FORBIDDEN,
    BadFrame,
    EnqueueAction,
    ErrorBody,
    ErrorFrame,
    IIIError,
    Inbound,
    InvocationResult,
    InvocationResultOut,
    InvokeFunction,
    InvokeFunctionOut,
    Ping,
    PongOut,
    ProvidedTriggerConfig,
    Reattach,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerOut,
    RegisterTriggerType,
    StateKeyInput,
    StateScopeInput,
    StateTriggerConfig,
    StateUpdateInput,
    StreamTriggerConfig,
    Telemetry,
    TriggerRegistrationResult,
    TriggerRegistrationResultOut,
    UnregisterFunction,
    UnregisterTrigger,
    UnregisterTriggerOut,
    VoidAction,
    deserialization_error,
    encode,
    function_not_found,
    parse_input,
    parse_set,
    parse_stream_send,
    state_matches,
    state_payload,
    stream_envelope,
    stream_matches,
    update_reply,
)
from ripple.iii.queues import Policy, Queues
from ripple.iii.rbac import Session, is_data_builtin
from ripple.iii.registry import Registry, TriggerEntry
from ripple.iii.routes import HttpRoutes
from ripple.store.origin import current_origin
from ripple.store.store import Store
from ripple.subscriptions.cursor import Limits
from ripple.subscriptions.follower import Follower

log = logging.getLogger("ripple.iii")

DEFAULT_CALL_TIMEOUT = 30.0  # the engine's default_timeout (30000 ms)
CATCH_UP_PAGE = 500
CAUSE_MEMORY = 10_000  # trigger calls whose trace id is remembered, to tag the writes they cause


class Worker:
    """One worker connection as the engine sees it (``session``: its RBAC session, on the RBAC port)."""

    def __init__(
        self,
        send: Callable[[bytes], Awaitable[None]],
        close: Callable[[], Awaitable[None]],
        session: Session | None = None,
    ) -> None:
        self.id = str(uuid.uuid4())
        self.session = session
        self.reattach_token = str(uuid.uuid4())
        self.send = send
        self.close = close
        self.pending: dict[str, tuple[asyncio.Future[Any], str]] = {}
        self.info: dict[str, Any] = {}
        self.connected_at = int(time.time() * 1000)
        self.alive = True


Builtin = Callable[[Any], Awaitable[Any]]


class Engine:
    """Routes iii calls between workers and ripple's built-ins; fires ``state``, ``stream`` and ``http`` triggers."""

    def __init__(
        self,
        store: Store,
        *,
        strict: bool = False,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        queue_policy: Policy | None = None,
    ) -> None:
        self.store = store
        self.compat = not strict
        self.call_timeout = call_timeout
        self.workers: dict[str, Worker] = {}
        self.queues = Queues(self, queue_policy)
        self.introspect = Introspection(self)
        self.channels = Channels()
        self.routes = HttpRoutes(self)
        self.http_functions = HttpFunctions()
        self.builtins: dict[str, Builtin] = {
            "state::set": self._state_set,
            "state::get": self._state_get,
            "state::delete": self._state_delete,
            "state::update": self._state_update,
            "state::list": self._state_list,
            "state::list_groups": self._state_list_groups,
            "stream::send": self._stream_send,
            **StreamItems(self).builtins(),
            **self.queues.builtins(),
            **self.introspect.builtins(),
            "engine::channels::create": self.channels.create_builtin,
        }
        self.registry = Registry(frozenset(self.builtins))
        self.pumps: dict[str, TriggerPump] = {}
        self.cron_jobs: dict[str, CronJob] = {}
        self.counters: collections.Counter[str] = collections.Counter()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._causes: collections.OrderedDict[str, Meta] = collections.OrderedDict()
        self._closed = False
        self._watchers: list[asyncio.Future[None]] = []
        self.trigger_limits = Limits(max_buffer_bytes=None)  # each trigger's live buffer (then: the log)

    # -- lifecycle

    def start(self) -> None:
        """Resume the queue consumers found in the ``reactions`` table (the server calls this once bound)."""
        self.queues.start()

    async def close(self) -> None:
        self._closed = True
        await self.queues.close()
        self.introspect.close()
        for job in list(self.cron_jobs.values()):
            job.stop()
        for pump in list(self.pumps.values()):
            pump.stop()
        for worker in list(self.workers.values()):
            self.disconnect(worker)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, *(p.task for p in self.pumps.values() if p.task), return_exceptions=True)
        self.pumps.clear()

    def spawn(self, coro: Awaitable[Any], name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def changed(self) -> None:
        """Wake :meth:`wait_until` callers: a worker, function or trigger came or went, or a call was sent."""
        watchers, self._watchers = self._watchers, []
        for fut in watchers:
            if not fut.done():
                fut.set_result(None)

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> None:
        """Wait (at most ``within`` seconds) until ``predicate()`` holds; raises ``TimeoutError``."""
        async with asyncio.timeout(within):
            while not predicate():
                fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._watchers.append(fut)
                await fut

    # -- workers

    async def connect(self, worker: Worker) -> None:
        """Register a connection; the caller has already sent ``workerregistered``."""
        self.workers[worker.id] = worker
        log.info("iii worker %s connected", worker.id)
        self.introspect.worker_event("worker_connected", worker.id)
        self.changed()

    def disconnect(self, worker: Worker) -> None:
        """Drop everything the worker registered and fail the calls it still owes. Idempotent."""
        if not worker.alive:
            return
        worker.alive = False
        self.workers.pop(worker.id, None)
        functions, triggers, orphaned = self.registry.drop_worker(worker.id)
        for trigger in triggers:
            told = self._deactivate(trigger)
            if told is not None:
                self.spawn(told, name="iii-unbind")
        for trigger in orphaned:
            log.warning(
                "trigger %s (%s → %s) waits: the worker that provided its type disconnected",
                trigger.id,
                trigger.trigger_type,
                trigger.function_id,
            )
        for invocation_id, (fut, function_id) in list(worker.pending.items()):
            if not fut.done():
                fut.set_exception(
                    IIIError("worker_disconnected", f"worker {worker.id} disconnected before answering {function_id}")
                )
            worker.pending.pop(invocation_id, None)
        log.info(
            "iii worker %s disconnected; dropped %d functions and %d triggers", worker.id, len(functions), len(triggers)
        )
        self.introspect.worker_event("worker_disconnected", worker.id)
        if functions:
            self.introspect.functions_changed()
        self.changed()

    async def handle(self, worker: Worker, message: Inbound | Telemetry | BadFrame) -> None:
        """One decoded frame from a worker. Never raises for bad input: the connection stays usable."""
        if isinstance(message, Telemetry):
            self.counters["telemetry_frames"] += 1
        elif isinstance(message, BadFrame):
            await self._bad_frame(worker, message)
        elif isinstance(message, InvokeFunction):
            self.spawn(self._serve_call(worker, message), name=f"iii-call-{message.function_id}")
        elif isinstance(message, InvocationResult):
            self._on_result(worker, message)
        elif isinstance(message, RegisterFunction):
            await self._register_function(worker, message)
        elif isinstance(message, UnregisterFunction):
            function_id = message.id if worker.session is None else worker.session.registered_id(message.id)
            if self.registry.remove_function(worker.id, function_id):
                self.introspect.functions_changed()
        elif isinstance(message, RegisterTrigger):
            await self._worker_trigger(worker, message)
        elif isinstance(message, UnregisterTrigger):
            await self.unregister_trigger(worker.id, message.id)
        elif isinstance(message, RegisterTriggerType):
            await self._register_trigger_type(worker, message)
        elif isinstance(message, TriggerRegistrationResult):
            await self._provider_result(worker, message)
        elif isinstance(message, Reattach):
            await self._reattach(worker, message)
        elif isinstance(message, Ping):
            await self._send(worker, encode(PongOut()))
        if isinstance(
            message, RegisterFunction | UnregisterFunction | RegisterTrigger | UnregisterTrigger | RegisterTriggerType
        ):
            self.changed()
        # registerservice, pong: accepted and ignored

    async def _register_function(self, worker: Worker, message: RegisterFunction) -> None:
        if worker.session is not None:  # the RBAC port: its rules and hook, then its prefix (ripple.iii.sessions)
            mapped = await sessions.function_registration(self, worker.session, message)
            if isinstance(mapped, IIIError):
                log.warning("iii rbac: %s", mapped.message)
                self.counters["rbac_refusals"] += 1
                await self._send(worker, encode(ErrorFrame(mapped.code, mapped.message)))  # SDKs ignore it
                return
            message = mapped
        rejected = self.registry.add_function(worker.id, message)
        if rejected is not None:
            log.warning("function %s refused: held by worker %s", message.id, rejected.owner_worker_id)
            await self._send(worker, encode(rejected))
        else:
            self.introspect.functions_changed()

    async def _worker_trigger(self, worker: Worker, message: RegisterTrigger) -> None:
        if worker.session is not None:
            mapped = await sessions.trigger_registration(self, worker.session, message)
            if isinstance(mapped, IIIError):
                log.warning("trigger %s (%s) refused: %s", message.id, message.trigger_type, mapped.message)
                reply = TriggerRegistrationResultOut(message.id, message.trigger_type, message.function_id,
                                                     mapped.body())
                await self._send(worker, encode(reply))
                return
            message = mapped
        await self.register_trigger(worker, message)

    async def _bad_frame(self, worker: Worker, bad: BadFrame) -> None:
        self.counters[f"bad_frames.{bad.kind}"] += 1
        if bad.kind == "unknown_type":
            log.info("worker %s sent an unknown message type %r; dropped", worker.id, bad.type)
            return
        log.warning("worker %s sent a bad frame: %s", worker.id, bad.message)
        if bad.type == "invokefunction" and bad.invocation_id is not None:
            body = ErrorBody("deserialization_error", bad.message)
            reply = InvocationResultOut(bad.invocation_id, bad.function_id or "", error=body)
            await self._send(worker, encode(reply))
        else:
            await self._send(worker, encode(ErrorFrame("invalid_message", bad.message)))

    async def _send(self, worker: Worker, frame: bytes) -> bool:
        if not worker.alive:
            return False
        try:
            await worker.send(frame)
        except Exception as exc:  # the connection went away: its handler disconnects it
            log.debug("send to worker %s failed: %r", worker.id, exc)
            return False
        return True

    async def _reattach(self, worker: Worker, message: Reattach) -> None:
        old = self.workers.get(message.previous_worker_id or "")
        if old is None or old is worker or old.reattach_token != message.reattach_token:
            return
        log.info("worker %s reattached as %s; retiring the old connection", old.id, worker.id)
        self.disconnect(old)
        self.spawn(old.close(), name="iii-retire")

    # -- calls

    async def _serve_call(self, worker: Worker, msg: InvokeFunction) -> None:
        """A worker's ``invokefunction``: answer it once, unless it is void."""
        void = msg.invocation_id is None or isinstance(msg.action, VoidAction)
        if worker.session is not None and await self._session_call(worker, worker.session, msg, void):
            return
        if isinstance(msg.action, EnqueueAction):
            try:
                receipt: Any = await self.queues.enqueue(msg.action.queue, msg.function_id, msg.data)
            except IIIError as exc:
                answer = InvocationResultOut(msg.invocation_id or "", msg.function_id, error=exc.body())
            else:
                answer = InvocationResultOut(msg.invocation_id or "", msg.function_id, result=receipt)
            if msg.invocation_id is not None:
                await self._send(worker, encode(answer))
            return
        data = msg.data
        if isinstance(data, dict):  # as the engine: the caller's worker id rides along in object data
            data = {**data, CALLER: worker.id}
        token = current_origin.set(self._cause_of(msg.traceparent))
        try:
            result = await self.invoke(
                msg.function_id,
                data,
                void=void,
                traceparent=msg.traceparent,
                baggage=msg.baggage,
                metadata=msg.metadata,
            )
        except IIIError as exc:
            if void:
                log.warning("void call to %s failed: %s %s", msg.function_id, exc.code, exc.message)
                return
            reply = InvocationResultOut(msg.invocation_id or "", msg.function_id, error=exc.body())
        else:
            if void:
                return
            reply = InvocationResultOut(msg.invocation_id or "", msg.function_id, result=result)
        finally:
            current_origin.reset(token)
        await self._send(worker, encode(reply))

    async def _session_call(self, worker: Worker, session: Session, msg: InvokeFunction, void: bool) -> bool:
        """A call from the RBAC port: refused (``FORBIDDEN``) unless the session may make it; handed to the port's
        middleware when it has one (the engine's own ``engine::*`` calls excepted). Returns whether it was answered
        here."""
        entry = self.registry.functions.get(msg.function_id)
        metadata = None if entry is None else entry.metadata
        middleware = session.config.middleware_function_id
        if session.may_call(msg.function_id, metadata, data_builtin=is_data_builtin(msg.function_id, self.builtins)):
            if middleware is None or msg.function_id.startswith("engine::"):
                return False
            data = {"function_id": msg.function_id, "payload": msg.data,
                    "action": None if msg.action is None else msgspec.to_builtins(msg.action),
                    "context": session.auth.context}
            try:
                reply = InvocationResultOut(msg.invocation_id or "", msg.function_id,
                                            result=await self.invoke(middleware, data, metadata=msg.metadata,
                                                                     trusted=True))
            except IIIError as exc:
                reply = InvocationResultOut(msg.invocation_id or "", msg.function_id, error=exc.body())
        else:
            self.counters["rbac_refusals"] += 1
            reply = InvocationResultOut(msg.invocation_id or "", msg.function_id,
                                        error=session.refusal(msg.function_id).body())
        if not void:
            await self._send(worker, encode(reply))
        return True

    async def invoke(
        self,
        function_id: str,
        data: Any,
        *,
        void: bool = False,
        traceparent: str | None = None,
        baggage: str | None = None,
        metadata: Any = None,
        trusted: bool = False,
    ) -> Any:
        """Call a built-in or a worker's function; raises :class:`IIIError`. A void call returns ``None`` at once.
        ``trusted``: the RBAC port's own functions (auth, middleware, hooks) are only ever a built-in or a function
        of a main-port worker, never one an RBAC session registered."""
        builtin = self.builtins.get(function_id)
        if builtin is not None:
            return await builtin(data)
        entry = self.registry.functions.get(function_id)
        if trusted and entry is not None and self._from_session(entry.worker_id):
            raise function_not_found(function_id)
        if entry is not None and entry.invocation is not None:  # an HTTP-invoked function: ripple calls its URL
            call = self.http_functions.call(function_id, parse_invocation(entry.invocation), data)
            if void:
                self.spawn(call, name=f"iii-http-fn-{function_id}")
                return None
            return await call
        worker = self.workers.get(entry.worker_id) if entry is not None else None
        if worker is None:
            raise function_not_found(function_id)
        wire_id = function_id if worker.session is None else worker.session.wire_id(function_id)
        out = InvokeFunctionOut(wire_id, data, None, traceparent, baggage, metadata)
        if void:
            await self._send(worker, encode(out))
            return None
        invocation_id = str(uuid.uuid4())
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        worker.pending[invocation_id] = (fut, function_id)
        try:
            if not await self._send(worker, encode(msgspec.structs.replace(out, invocation_id=invocation_id))):
                raise IIIError("worker_disconnected", f"worker {worker.id} is gone; {function_id} was not called")
            if self._watchers:
                self.changed()
            try:
                async with asyncio.timeout(self.call_timeout):
                    return await fut
            except TimeoutError:
                self.counters["call_timeouts"] += 1
                raise IIIError(
                    "timeout", f"Invocation of {function_id} timed out after {int(self.call_timeout * 1000)} ms"
                ) from None
        finally:
            worker.pending.pop(invocation_id, None)

    def _from_session(self, worker_id: str) -> bool:
        """Was a function registered by an RBAC session (or by a worker that is gone)? Then it is not trusted."""
        worker = self.workers.get(worker_id)
        return worker is None or worker.session is not None

    def _on_result(self, worker: Worker, msg: InvocationResult) -> None:
        pending = worker.pending.get(msg.invocation_id)
        if pending is None:
            log.debug("late or unknown invocation result %s from %s", msg.invocation_id, worker.id)
            return
        fut, _ = pending
        if fut.done():
            return
        if msg.error is not None:
            fut.set_exception(IIIError(msg.error.code, msg.error.message))
        else:
            fut.set_result(msg.result)

    # -- cause tagging: a trigger call carries a trace id; writes made under it carry the event's offset

    def _trace_for(self, event: Event) -> str:
        trace_id = uuid.uuid4().hex
        depth = (event.meta.depth or 0) + 1
        self._causes[trace_id] = Meta(cause=event.offset, depth=depth)
        while len(self._causes) > CAUSE_MEMORY:
            self._causes.popitem(last=False)
        return f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"

    def _cause_of(self, traceparent: str | None) -> Meta | None:
        if not traceparent:
            return None
        parts = traceparent.split("-")
        return self._causes.get(parts[1]) if len(parts) >= 3 else None

    # -- built-ins (III-PROTOCOL §3)

    @staticmethod
    def store_error(code: str, exc: RippleError) -> IIIError:
        """A store error as the iii error body the engine would send (``code`` for storage failures; a refusal by the
        caller's grants is the engine's permission code, ``FORBIDDEN``, with ripple's message)."""
        if isinstance(exc, ForbiddenError):
            return IIIError(FORBIDDEN, exc.message)
        if isinstance(exc, ValueTooLargeError):
            return IIIError("VALUE_TOO_LARGE", exc.message)
        if isinstance(exc, CascadeLimitError):
            return IIIError("cascade_limit", exc.message)
        return IIIError(code, exc.message)

    async def _state_set(self, data: Any) -> Any:
        scope, key, value = parse_set(data)
        try:
            result = await self.store.set(scope, key, value)
        except RippleError as exc:
            raise self.store_error("SET_ERROR", exc) from None
        return {"old_value": result.old_value, "new_value": result.new_value}

    async def _state_get(self, data: Any) -> Any:
        inp: StateKeyInput = parse_input("state::get", data, StateKeyInput)
        try:
            value = await self.store.get(inp.scope, inp.key)
        except RippleError as exc:
            raise self.store_error("GET_ERROR", exc) from None
        return msgspec.UNSET if value is None else value  # the current engine omits `result` for a missing key

    async def _state_delete(self, data: Any) -> Any:
        inp: StateKeyInput = parse_input("state::delete", data, StateKeyInput)
        try:
            result = await self.store.delete(inp.scope, inp.key)  # a missing key writes nothing
        except RippleError as exc:
            raise self.store_error("DELETE_ERROR", exc) from None
        return msgspec.UNSET if result is None else result.old_value  # missing: `result` omitted, as the engine

    async def _state_update(self, data: Any) -> Any:
        inp: StateUpdateInput = parse_input("state::update", data, StateUpdateInput)
        try:
            result = await self.store.update(inp.scope, inp.key, inp.ops)
        except InvalidOpError as exc:
            raise deserialization_error("state::update", exc.message) from None
        except UpdateRejectedError as exc:
            # DESIGN §4: every op failed → nothing written; reply as if the value were written back unchanged.
            try:
                old = await self.store.get(inp.scope, inp.key)
            except RippleError as read_exc:
                raise self.store_error("UPDATE_ERROR", read_exc) from None
            return update_reply(old, old, exc.errors)
        except RippleError as exc:
            raise self.store_error("UPDATE_ERROR", exc) from None
        return update_reply(result.old_value, result.new_value, [msgspec.to_builtins(e) for e in result.errors])

    async def _state_list(self, data: Any) -> Any:
        inp: StateScopeInput = parse_input("state::list", data, StateScopeInput)
        values: list[Any] = []
        cursor: str | None = None
        try:
            while True:
                page = await self.store.list(inp.scope, limit=1000, cursor=cursor)
                values.extend(entry.value for entry in page.items)
                if page.next_cursor is None:
                    return values
                cursor = page.next_cursor
        except RippleError as exc:
            raise self.store_error("LIST_ERROR", exc) from None

    async def _state_list_groups(self, data: Any) -> Any:
        try:
            groups = (await self.store.list_groups()).groups
            return {"groups": [g for g in groups if not is_item_scope(g)]}  # stream groups are not iii state
        except RippleError as exc:
            raise self.store_error("LIST_GROUPS_ERROR", exc) from None

    async def _stream_send(self, data: Any) -> Any:
        send = parse_stream_send(data, compat=self.compat)
        try:
            await self.store.send(send.stream, send.group, send.type, send.data, id=send.id)
        except RippleError as exc:
            raise self.store_error("STREAM_SEND_ERROR", exc) from None
        return None

    # -- triggers

    async def register_trigger(self, worker: Worker | None, msg: RegisterTrigger) -> IIIError | None:
        """Register a trigger for a worker (``None``: ``engine::register_trigger``); returns the refusal, which a
        worker is also sent (the engine answers only failures). Under ``--auth`` a trigger may only watch what the
        caller's token may read (ripple.iii.auth)."""
        try:
            identity = current_identity.get()
            forbidden = None if identity is None else trigger_refusal(identity, msg)
            if forbidden is not None:
                raise IIIError(FORBIDDEN, forbidden.message)
            entry, replaced, status = self.registry.add_trigger(None if worker is None else worker.id, msg)
        except IIIError as exc:
            log.warning("trigger %s (%s) refused: %s", msg.id, msg.trigger_type, exc.message)
            if worker is not None:
                reply = TriggerRegistrationResultOut(msg.id, msg.trigger_type, msg.function_id, exc.body())
                await self._send(worker, encode(reply))
            return exc
        if replaced is not None:
            told = self._deactivate(replaced, tell_provider=replaced.trigger_type != entry.trigger_type)
            if told is not None:
                await told
        if status == "pending":
            log.info(
                "trigger %s (function %s) waits: no worker provides trigger type %r yet",
                entry.id,
                entry.function_id,
                entry.trigger_type,
            )
            return None
        await self._activate(entry)
        return None

    async def unregister_trigger(self, owner: str | None, trigger_id: str) -> bool:
        entry = self.registry.remove_trigger(owner, trigger_id)
        if entry is None:
            return False
        told = self._deactivate(entry)
        if told is not None:
            await told
        return True

    async def _activate(self, entry: TriggerEntry) -> None:
        """Start what makes a live trigger fire (its pump, consumer or timer), or hand it to its provider."""
        kind = entry.trigger_type
        if kind in ("state", "stream"):
            pump = TriggerPump(self, entry)
            self.pumps[entry.id] = pump
            pump.start()
        elif kind == "durable:subscriber":
            await self.queues.subscribe(entry)
        elif kind == "cron":
            job = CronJob(self, entry)
            self.cron_jobs[entry.id] = job
            job.start()
        elif isinstance(entry.config, ProvidedTriggerConfig):
            await self._to_provider(entry, bind_frame(entry))

    def _deactivate(self, entry: TriggerEntry, *, tell_provider: bool = True) -> Awaitable[None] | None:
        """Stop what made a trigger fire. For a provided type, returns the send that tells its provider (awaited by
        the caller, so frames to one provider keep their order)."""
        self._stop_pump(entry.id)
        job = self.cron_jobs.pop(entry.id, None)
        if job is not None:
            job.stop()
        if entry.trigger_type == "durable:subscriber":
            self.queues.unsubscribe(entry)
        if tell_provider and isinstance(entry.config, ProvidedTriggerConfig):
            return self._to_provider(entry, UnregisterTriggerOut(entry.id, entry.trigger_type))
        return None

    async def _to_provider(self, entry: TriggerEntry, frame: RegisterTriggerOut | UnregisterTriggerOut) -> None:
        provider = self.workers.get(self.registry.provider(entry.trigger_type) or "")
        if provider is not None:
            await self._send(provider, encode(frame))

    async def _register_trigger_type(self, worker: Worker, msg: RegisterTriggerType) -> None:
        if worker.session is not None:
            mapped = await sessions.trigger_type_registration(self, worker.session, msg)
            if mapped is None:
                return
            msg = mapped
        triggers = self.registry.add_trigger_type(worker.id, msg)
        if triggers is None:
            log.warning("worker %s may not provide trigger type %r: ripple provides it", worker.id, msg.id)
            return
        log.info("worker %s provides trigger type %r (%d triggers bound)", worker.id, msg.id, len(triggers))
        for entry in triggers:
            await self._send(worker, encode(bind_frame(entry)))

    async def _provider_result(self, worker: Worker, msg: TriggerRegistrationResult) -> None:
        """A provider refused a trigger: it waits again, and its owner hears why (as the engine forwards it)."""
        entry = self.registry.triggers.get(msg.id)
        if msg.error is None or entry is None or self.registry.provider(entry.trigger_type) != worker.id:
            return
        log.warning("provider %s refused trigger %s: %s %s", worker.id, msg.id, msg.error.code, msg.error.message)
        self.registry.park(msg.id)
        owner = self.workers.get(entry.worker_id or "")
        if owner is not None:
            reply = TriggerRegistrationResultOut(entry.id, entry.trigger_type, entry.function_id, msg.error)
            await self._send(owner, encode(reply))

    def _stop_pump(self, trigger_id: str) -> None:
        pump = self.pumps.pop(trigger_id, None)
        if pump is not None:
            pump.stop()

    async def fire(self, entry: TriggerEntry, event: Event) -> None:
        """Call one trigger's function for one event; failures are logged, never raised."""
        payload: Any = state_payload(event) if entry.trigger_type == "state" else stream_envelope(event)
        await self.call_trigger(entry, msgspec.to_builtins(payload), self._trace_for(event), f"offset {event.offset}")

    async def call_trigger(self, entry: TriggerEntry, data: Any, trace: str | None = None, what: str = "") -> bool:
        """Run a trigger's condition (only an exact ``false`` skips) and function; errors are logged and counted.
        Returns whether the function ran and succeeded (a skipped call counts as done)."""
        condition = getattr(entry.config, "condition_function_id", None)
        try:
            if condition is not None and await self.invoke(condition, data, traceparent=trace) is False:
                return True
            await self.invoke(entry.function_id, data, traceparent=trace, metadata=entry.metadata)
        except IIIError as exc:
            self.counters["trigger_failures"] += 1
            log.warning(
                "trigger %s → %s failed%s: %s %s",
                entry.id,
                entry.function_id,
                f" at {what}" if what else "",
                exc.code,
                exc.message,
            )
            return False
        return True

def bind_frame(entry: TriggerEntry) -> RegisterTriggerOut:
    """The ``registertrigger`` frame that hands a trigger to the worker providing its type (config as sent)."""
    return RegisterTriggerOut(entry.id, entry.trigger_type, entry.function_id, entry.raw_config, entry.metadata)


def stream_trigger_filter(stream: str, group: str | None) -> Filter:
    """What a ``stream`` trigger follows: the stream's sends and its groups' stored items. Without a group, every
    group's item scope qualifies, which no scope list can name: it follows everything and ``matches`` decides."""
    if group is None:
        return Filter("all")
    try:
        return Filter("stream", frozenset([stream]), frozenset([group]), frozenset([item_scope(stream, group)]))
    except ValueError:  # names too long to hold items
        return Filter("stream", frozenset([stream]), frozenset([group]))


class TriggerPump:
    """Delivers one ``state``/``stream`` trigger's events in offset order, one at a time, off the writer's path.

    A thin driver of a :class:`~ripple.subscriptions.follower.Follower` that starts at the head when the trigger is
    registered (iii triggers see live events only): a slow worker slows only its own trigger, whose follower falls
    back to reading the log, and loses nothing while the worker is connected.
    """

    def __init__(self, engine: Engine, entry: TriggerEntry) -> None:
        self.engine = engine
        self.entry = entry
        self.task: asyncio.Task[None] | None = None
        config = entry.config
        if isinstance(config, StateTriggerConfig):
            self.matches: Callable[[Event], bool] = lambda e: state_matches(config, e)
            f = Filter.of("state", [config.scope] if config.scope else None, [config.key] if config.key else None)
        else:
            assert isinstance(config, StreamTriggerConfig)
            self.matches = lambda e: stream_matches(config.stream_name, config.group_id, config.item_id, e)
            # Sends are logged under the stream's name, stored items under each group's scope (ripple.core.names).
            f = stream_trigger_filter(config.stream_name, config.group_id)
        store = engine.store
        self.follower = Follower(store, f, store.head, limits=engine.trigger_limits,
                                 overflow_counter="iii_trigger_overflows")

    def start(self) -> None:
        self.follower.attach()
        self.task = asyncio.create_task(self._run(), name=f"iii-trigger-{self.entry.id}")

    def stop(self) -> None:
        self.follower.detach()
        if self.task is not None:
            self.task.cancel()

    async def _run(self) -> None:
        with contextlib.suppress(StoreClosedError):
            while True:
                for event in await self.follower.next(CATCH_UP_PAGE):
                    if self.matches(event):
                        await self.engine.fire(self.entry, event)
