"""The iii wire protocol, sans I/O: frames ↔ typed messages, built-in inputs ↔ ripple commands, payload shaping.

Nothing here touches a socket, the event loop or the store: every function takes values and returns values, so the
rules of ``III-PROTOCOL.md`` are tested without a server (``tests/iii/test_protocol.py``). The compatibility rules:

* **R-0** an ``invocation_id`` may be any string (the engine drops non-UUIDs);
* **R-1** (retired in round 2) a trigger of a type nobody provides waits, as in the current engine, until a worker
  registers that type (``registertriggertype``);
* **R-2** the stream port also serves ``/stream/{stream}/{group}`` as an auto-join with ``?after=N`` resume
  (:func:`parse_stream_path`);
* **R-3** an HTTP request's JSON-object body is also spread at the top level of the request (:func:`api_request`);
* **R-4** a handler result that is not an ApiResponse is the response body itself (:func:`http_reply`);
* **R-5** ``stream::send`` accepts ``event_type`` as an alias of ``type`` (:func:`parse_stream_send`);
* **R-6** a delete of a missing key writes and fires nothing (the store's own rule, DESIGN §2).

R-3, R-4 and R-5 take a ``compat`` flag: on by default, off with ``--iii-strict``.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import parse_qsl

import msgspec

from ripple.core.events import Event
from ripple.core.names import is_item_scope, parse_item_scope
from ripple.iii.cron import parse_cron

# ---- frames: worker → engine ------------------------------------------------------------------------------------


class ErrorBody(msgspec.Struct, frozen=True, omit_defaults=True):
    """iii's ``ErrorBody``: ``{code, message, stacktrace?}``."""

    code: str
    message: str
    stacktrace: str | None = None


class VoidAction(msgspec.Struct, frozen=True, tag="void", tag_field="type"):
    pass


class EnqueueAction(msgspec.Struct, frozen=True, tag="enqueue", tag_field="type"):
    queue: str | None = None


Action = VoidAction | EnqueueAction


class _In(msgspec.Struct, tag_field="type"):
    """Base of the messages a worker sends. Unknown fields (``message_type``, ``namespace``...) are ignored."""


class RegisterFunction(_In, tag="registerfunction"):
    id: str
    description: str | None = None
    request_format: Any = None
    response_format: Any = None
    metadata: Any = None
    invocation: Any = None


class UnregisterFunction(_In, tag="unregisterfunction"):
    id: str


class RegisterTrigger(_In, tag="registertrigger"):
    id: str
    trigger_type: str
    function_id: str
    config: Any = None
    metadata: Any = None


class UnregisterTrigger(_In, tag="unregistertrigger"):
    id: str
    trigger_type: str | None = None


class RegisterTriggerType(_In, tag="registertriggertype"):
    id: str
    description: str | None = None
    trigger_request_format: Any = None
    call_request_format: Any = None


class RegisterService(_In, tag="registerservice"):
    id: str
    name: str | None = None
    description: str | None = None
    parent_service_id: str | None = None


class InvokeFunction(_In, tag="invokefunction"):
    function_id: str
    data: Any = None
    invocation_id: str | None = None  # any string
    action: Action | None = None
    traceparent: str | None = None
    baggage: str | None = None
    metadata: Any = None


class InvocationResult(_In, tag="invocationresult"):
    invocation_id: str
    function_id: str | None = None
    result: Any = msgspec.UNSET  # absent (a Node handler returned nothing) is kept apart from null
    error: ErrorBody | None = None
    traceparent: str | None = None
    baggage: str | None = None


class TriggerRegistrationResult(_In, tag="triggerregistrationresult"):
    id: str
    trigger_type: str | None = None
    function_id: str | None = None
    error: ErrorBody | None = None


class Reattach(_In, tag="reattach"):
    previous_worker_id: str | None = None
    reattach_token: str | None = None


class Ping(_In, tag="ping"):
    pass


class Pong(_In, tag="pong"):
    pass


Inbound = (
    RegisterFunction
    | UnregisterFunction
    | RegisterTrigger
    | UnregisterTrigger
    | RegisterTriggerType
    | RegisterService
    | InvokeFunction
    | InvocationResult
    | TriggerRegistrationResult
    | Reattach
    | Ping
    | Pong
)

KNOWN_TYPES = frozenset(str(t.__struct_config__.tag) for t in Inbound.__args__)
TELEMETRY_PREFIXES = (b"OTLP", b"MTRC", b"LOGS")


class Telemetry(msgspec.Struct, frozen=True):
    """A binary OTLP/MTRC/LOGS frame: dropped."""

    prefix: str
    size: int


class BadFrame(msgspec.Struct, frozen=True):
    """A frame ripple cannot use. ``kind``: ``invalid_json``, ``unknown_type`` or ``invalid_message``.

    ``invocation_id``/``function_id`` are set when a malformed ``invokefunction`` still names its call, so the caller
    can be answered instead of waiting for its timeout.
    """

    kind: Literal["invalid_json", "unknown_type", "invalid_message"]
    message: str
    type: str | None = None
    invocation_id: str | None = None
    function_id: str | None = None


class _Probe(msgspec.Struct):
    type: Any = None
    invocation_id: Any = None
    function_id: Any = None


_inbound = msgspec.json.Decoder(Inbound)
_probe = msgspec.json.Decoder(_Probe)


def decode_frame(frame: str | bytes) -> Inbound | Telemetry | BadFrame:
    """One WebSocket frame from a worker. Text and binary frames both carry JSON; binary telemetry is recognised."""
    if isinstance(frame, bytes) and frame[:4] in TELEMETRY_PREFIXES:
        return Telemetry(frame[:4].decode(), len(frame))
    try:
        message: Inbound = _inbound.decode(frame)
        return message
    except msgspec.DecodeError as exc:
        first_error = str(exc)
    try:
        probe = _probe.decode(frame)
    except msgspec.DecodeError:
        if first_error.startswith("JSON is malformed") or "truncated" in first_error:
            return BadFrame("invalid_json", f"the frame is not valid JSON: {first_error}")
        return BadFrame("invalid_json", "a frame must be one JSON object")
    kind = probe.type
    if not isinstance(kind, str):
        return BadFrame("invalid_message", "the frame has no string `type` field")
    if kind not in KNOWN_TYPES:
        return BadFrame("unknown_type", f"unknown message type {kind!r}", type=kind)
    return BadFrame(
        "invalid_message",
        f"invalid {kind} message: {first_error}",
        type=kind,
        invocation_id=probe.invocation_id if isinstance(probe.invocation_id, str) else None,
        function_id=probe.function_id if isinstance(probe.function_id, str) else None,
    )


# ---- frames: engine → worker ------------------------------------------------------------------------------------


class _Out(msgspec.Struct, tag_field="type", omit_defaults=True):
    pass


class WorkerRegistered(_Out, tag="workerregistered"):
    worker_id: str
    reattach_token: str


class InvokeFunctionOut(_Out, tag="invokefunction"):
    function_id: str
    data: Any
    invocation_id: str | None = None  # None: a void call, never answered
    traceparent: str | None = None
    baggage: str | None = None
    metadata: Any = None


class InvocationResultOut(_Out, tag="invocationresult"):
    invocation_id: str
    function_id: str
    result: Any = msgspec.UNSET
    error: ErrorBody | None = None


class RegisterTriggerOut(_Out, tag="registertrigger"):
    """Sent to the worker that provides a trigger type: a trigger of that type to bind."""

    id: str
    trigger_type: str
    function_id: str
    config: Any
    metadata: Any = None


class UnregisterTriggerOut(_Out, tag="unregistertrigger"):
    id: str
    trigger_type: str | None = None


class TriggerRegistrationResultOut(_Out, tag="triggerregistrationresult"):
    id: str
    trigger_type: str
    function_id: str
    error: ErrorBody | None = None


class RegistrationRejected(_Out, tag="registrationrejected"):
    code: str  # FUNCTION_NAMESPACE_CONFLICT
    namespace: str
    function_id: str
    owner_worker_id: str


class PongOut(_Out, tag="pong"):
    pass


class ErrorFrame(_Out, tag="error"):
    """ripple's answer to a frame it cannot use (iii has none; SDKs ignore unknown types)."""

    code: str
    message: str


Outbound = (
    WorkerRegistered
    | InvokeFunctionOut
    | RegisterTriggerOut
    | UnregisterTriggerOut
    | InvocationResultOut
    | TriggerRegistrationResultOut
    | RegistrationRejected
    | PongOut
    | ErrorFrame
)

_encoder = msgspec.json.Encoder()


def encode(message: Outbound | msgspec.Struct) -> bytes:
    return _encoder.encode(message)


# ---- errors -----------------------------------------------------------------------------------------------------


class IIIError(Exception):
    """An iii error body to send back (``invocationresult.error``, or an HTTP error envelope)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def body(self) -> ErrorBody:
        return ErrorBody(self.code, self.message)


FORBIDDEN = "FORBIDDEN"  # the engine's code for every permission refusal (RBAC, a session's trigger types)


def function_not_found(function_id: str) -> IIIError:
    return IIIError("function_not_found", f"Function {function_id} not found in namespace default.")


def deserialization_error(function_id: str, reason: str) -> IIIError:
    return IIIError("deserialization_error", f"Failed to deserialize input for {function_id}: {reason}")


# ---- built-in inputs -------------------------------------------------------------------------------------------


class StateKeyInput(msgspec.Struct, frozen=True):
    scope: str
    key: str


class StateSetInput(msgspec.Struct, frozen=True):
    scope: str
    key: str
    value: Any = msgspec.UNSET
    data: Any = msgspec.UNSET  # iii's alias of `value`


class StateUpdateInput(msgspec.Struct, frozen=True):
    scope: str
    key: str
    ops: list[Any]


class StateScopeInput(msgspec.Struct, frozen=True):
    scope: str


class StreamSendInput(msgspec.Struct, frozen=True):
    stream_name: str
    group_id: str
    data: Any = None
    type: str | None = None
    event_type: str | None = None
    id: str | None = None


class StreamItemInput(msgspec.Struct, frozen=True):
    """``stream::get`` / ``stream::delete``."""

    stream_name: str
    group_id: str
    item_id: str


class StreamSetItemInput(msgspec.Struct, frozen=True):
    stream_name: str
    group_id: str
    item_id: str
    data: Any


class StreamUpdateItemInput(msgspec.Struct, frozen=True):
    stream_name: str
    group_id: str
    item_id: str
    ops: list[Any]


class StreamGroupInput(msgspec.Struct, frozen=True):
    """``stream::list``."""

    stream_name: str
    group_id: str


class StreamNameInput(msgspec.Struct, frozen=True):
    """``stream::list_groups``."""

    stream_name: str


class StreamSend(msgspec.Struct, frozen=True):
    stream: str
    group: str
    type: str
    data: Any
    id: str | None


def parse_input(function_id: str, data: Any, kind: type[Any]) -> Any:
    """Convert a built-in's ``data`` to its input Struct; a mismatch is iii's ``deserialization_error``."""
    if data is None or not isinstance(data, dict):
        raise deserialization_error(function_id, f"expected an object, got {_json_type(data)}")
    try:
        return msgspec.convert(data, kind, strict=True)
    except msgspec.ValidationError as exc:
        raise deserialization_error(function_id, _readable(str(exc))) from None


def parse_set(data: Any) -> tuple[str, str, Any]:
    """``state::set {scope, key, value}`` (``data`` is an alias of ``value``)."""
    inp: StateSetInput = parse_input("state::set", data, StateSetInput)
    value = inp.value if inp.value is not msgspec.UNSET else inp.data
    if value is msgspec.UNSET:
        raise deserialization_error("state::set", "missing field `value`")
    return inp.scope, inp.key, value


def parse_stream_send(data: Any, *, compat: bool) -> StreamSend:
    """``stream::send {stream_name, group_id, type, data, id?}``; R-5: ``event_type`` is an alias, ``type`` wins."""
    inp: StreamSendInput = parse_input("stream::send", data, StreamSendInput)
    kind = inp.type if inp.type is not None else (inp.event_type if compat else None)
    if kind is None:
        raise deserialization_error("stream::send", "missing field `type`")
    return StreamSend(inp.stream_name, inp.group_id, kind, inp.data, inp.id)


def update_reply(old_value: Any, new_value: Any, errors: list[dict[str, Any]]) -> dict[str, Any]:
    """``state::update``'s result: ``errors`` only when not empty."""
    reply: dict[str, Any] = {"old_value": old_value, "new_value": new_value}
    if errors:
        reply["errors"] = errors
    return reply


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array"}.get(
        type(value), "an object"
    )


def _readable(msgspec_message: str) -> str:
    """msgspec's ``Object missing required field `key``` → iii's ``missing field `key```."""
    match = re.match(r"Object missing required field `(.+?)`", msgspec_message)
    if match:
        return f"missing field `{match.group(1)}`"
    return msgspec_message


# ---- trigger configs -------------------------------------------------------------------------------------------

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"})


class StateTriggerConfig(msgspec.Struct, frozen=True):
    scope: str | None = None
    key: str | None = None
    condition_function_id: str | None = None


class HttpTriggerConfig(msgspec.Struct, frozen=True):
    api_path: str
    http_method: str = "GET"
    condition_function_id: str | None = None
    middleware_function_ids: list[str] = []


class StreamTriggerConfig(msgspec.Struct, frozen=True):
    stream_name: str
    group_id: str | None = None
    item_id: str | None = None
    condition_function_id: str | None = None


class SubscribeTriggerConfig(msgspec.Struct, frozen=True):
    """``subscribe``: called with the data of every ``publish`` to the topic."""

    topic: str
    condition_function_id: str | None = None


class DurableSubscriberConfig(msgspec.Struct, frozen=True):
    """``durable:subscriber``: every ``iii::durable::publish`` to the topic, at least once, with retries.
    ``queue_config`` keys ripple reads: ``maxRetries``, ``backoffDelayMs``."""

    topic: str
    condition_function_id: str | None = None
    queue_config: dict[str, Any] | None = None


class CronTriggerConfig(msgspec.Struct, frozen=True):
    expression: str
    condition_function_id: str | None = None


class EngineEventConfig(msgspec.Struct, frozen=True):
    """``engine::functions-available`` / ``engine::workers-available``: no settings."""

    condition_function_id: str | None = None


class ProvidedTriggerConfig(msgspec.Struct, frozen=True):
    """A trigger of a type a worker provides: the config is the provider's business and is passed on as sent."""

    value: Any = None
    condition_function_id: str | None = None


TriggerConfig = (
    StateTriggerConfig
    | HttpTriggerConfig
    | StreamTriggerConfig
    | SubscribeTriggerConfig
    | DurableSubscriberConfig
    | CronTriggerConfig
    | EngineEventConfig
    | ProvidedTriggerConfig
)

FUNCTIONS_AVAILABLE = "engine::functions-available"
WORKERS_AVAILABLE = "engine::workers-available"

# The trigger types ripple itself provides: id → (config type, description for engine::triggers::list).
BUILTIN_TRIGGER_TYPES: dict[str, tuple[type[TriggerConfig], str]] = {
    "http": (HttpTriggerConfig, "HTTP routes on the HTTP-trigger port"),
    "state": (StateTriggerConfig, "State changes (state::set/update/delete)"),
    "stream": (StreamTriggerConfig, "Stream changes: stream::send events and stored items' create/update/delete"),
    "subscribe": (SubscribeTriggerConfig, "Topic subscription: every publish to the topic (live only)"),
    "durable:subscriber": (DurableSubscriberConfig, "Durable topic subscription on ripple's log (at least once)"),
    "cron": (CronTriggerConfig, "Cron schedule (sec min hour day month weekday [year])"),
    FUNCTIONS_AVAILABLE: (EngineEventConfig, "Fires with the function list when functions come or go"),
    WORKERS_AVAILABLE: (EngineEventConfig, "Fires with the worker list when workers come or go"),
}


def parse_trigger_config(trigger_type: str, config: Any) -> TriggerConfig:
    """A built-in trigger type's config, typed; raises :class:`IIIError` ``trigger_registration_failed``.

    A type ripple does not provide gets a :class:`ProvidedTriggerConfig` (its provider, a worker, reads it).
    """
    known = BUILTIN_TRIGGER_TYPES.get(trigger_type)
    if known is None:
        condition = config.get("condition_function_id") if isinstance(config, dict) else None
        return ProvidedTriggerConfig(config, condition if isinstance(condition, str) else None)
    kind = known[0]
    try:
        parsed: TriggerConfig = msgspec.convert({} if config is None else config, kind, strict=True)
    except msgspec.ValidationError as exc:
        raise IIIError(
            "trigger_registration_failed", f"invalid {trigger_type} trigger config: {_readable(str(exc))}"
        ) from None
    if isinstance(parsed, HttpTriggerConfig):
        method = parsed.http_method.upper()
        if method not in HTTP_METHODS:
            raise IIIError("trigger_registration_failed", f"unsupported http_method {parsed.http_method!r}")
        parsed = msgspec.structs.replace(parsed, http_method=method, api_path=normalize_path(parsed.api_path))
    if isinstance(parsed, CronTriggerConfig):
        if not parsed.expression:
            raise IIIError("trigger_registration_failed", "Cron expression is required")
        try:
            parse_cron(parsed.expression)
        except ValueError as exc:
            raise IIIError("trigger_registration_failed", str(exc)) from None
    return parsed


# ---- state triggers --------------------------------------------------------------------------------------------


class StateTriggerPayload(msgspec.Struct, frozen=True):
    """Exactly what the engine sends a ``state`` trigger's function."""

    type: str
    event_type: str
    scope: str
    key: str
    old_value: Any
    new_value: Any


def state_matches(config: StateTriggerConfig, event: Event) -> bool:
    """A trigger with no scope watches every iii state scope, which excludes stored stream items (they fire
    ``stream`` triggers, as in iii); naming an item scope explicitly watches it."""
    if config.scope is None:
        if event.kind != "state" or is_item_scope(event.scope):
            return False
    elif event.kind != "state" or config.scope != event.scope:
        return False
    return config.key is None or config.key == event.key


def state_payload(event: Event) -> StateTriggerPayload:
    return StateTriggerPayload(
        "state", f"state:{event.event_type}", event.scope, event.key, event.old_value, event.new_value
    )


# ---- streams ---------------------------------------------------------------------------------------------------


class StreamEnvelope(msgspec.Struct, frozen=True):
    """The stream server's frame (III-PROTOCOL §5), plus ripple's ``offset`` (iii clients ignore it)."""

    type: str
    timestamp: int
    streamName: str
    groupId: str
    id: str | None
    event: dict[str, Any]
    offset: int


ITEM_FRAME_TYPES = {"created": "create", "updated": "update", "deleted": "delete"}


def stream_envelope(event: Event) -> StreamEnvelope:
    """A logged stream change as the envelope clients and ``stream`` triggers receive: a ``stream::send`` event, or
    a stored item's ``create``/``update``/``delete`` (data: the new value; for a delete, the old one)."""
    found = parse_item_scope(event.scope) if event.kind == "state" else None
    if found is not None:
        data = event.old_value if event.event_type == "deleted" else event.new_value
        body: dict[str, Any] = {"type": ITEM_FRAME_TYPES[event.event_type], "data": data}
        return StreamEnvelope("stream", event.ts, found[0], found[1], event.key, body, event.offset)
    return StreamEnvelope(
        "stream",
        event.ts,
        event.scope,
        event.key,
        event.meta.id,
        {"type": "event", "event": {"type": event.event_type, "data": event.new_value}},
        event.offset,
    )


def sync_envelope(stream: str, group: str, item_id: str | None, ts: int, offset: int, data: Any) -> StreamEnvelope:
    """The frame right after a join: the group's stored items as of ``offset`` (a list), or the one item (or
    ``null``) when the join names an item."""
    return StreamEnvelope("stream", ts, stream, group, item_id, {"type": "sync", "data": data}, offset)


def stream_target(event: Event) -> tuple[str, str, str | None] | None:
    """``(stream, group, item id)`` of a logged stream change (a send, or a stored item's change), else ``None``."""
    if event.kind == "stream":
        return event.scope, event.key, event.meta.id
    found = parse_item_scope(event.scope)
    return None if found is None else (found[0], found[1], event.key)


def stream_matches(stream: str, group: str | None, item_id: str | None, event: Event) -> bool:
    """iii's rule: same stream and group, and either no item id or the same one."""
    target = stream_target(event)
    return (
        target is not None
        and target[0] == stream
        and (group is None or target[1] == group)
        and (item_id is None or target[2] == item_id)
    )


class JoinData(msgspec.Struct, frozen=True):
    subscriptionId: str
    streamName: str
    groupId: str
    id: str | None = None


class Join(msgspec.Struct, frozen=True, tag="join", tag_field="type"):
    data: JoinData


class Leave(msgspec.Struct, frozen=True, tag="leave", tag_field="type"):
    data: JoinData


_client_frame = msgspec.json.Decoder(Join | Leave)


def decode_client_frame(frame: str | bytes) -> Join | Leave | None:
    """A stream client's frame; anything else is ignored, as the engine does."""
    try:
        message: Join | Leave = _client_frame.decode(frame)
    except msgspec.DecodeError:
        return None
    return message


class StreamPath(msgspec.Struct, frozen=True):
    stream: str
    group: str
    after: int | None


def parse_stream_path(path: str) -> StreamPath | Literal["root"] | None:
    """R-2: ``/`` → ``"root"``; ``/stream/{stream}/{group}[?after=N]`` → a :class:`StreamPath`; else ``None``.

    Raises ``ValueError`` for a malformed ``after``.
    """
    route, _, query = path.partition("?")
    if route in ("", "/"):
        return "root"
    parts = route.split("/")
    if len(parts) != 4 or parts[0] != "" or parts[1] != "stream" or not parts[2] or not parts[3]:
        return None
    from urllib.parse import unquote

    after: int | None = None
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "token":
            continue  # the access token (ripple.iii.auth)
        if name != "after":
            raise ValueError(f"unknown query parameter {name!r}")
        if after is not None:
            raise ValueError("query parameter 'after' given more than once")
        if not value.isdigit():
            raise ValueError(f"after must be a non-negative integer, got {value!r}")
        after = int(value)
    return StreamPath(unquote(parts[2]), unquote(parts[3]), after)


# ---- http triggers ---------------------------------------------------------------------------------------------


def normalize_path(path: str) -> str:
    """``todos/:id/`` → ``/todos/:id`` (a leading ``/`` is optional in iii)."""
    return "/" + path.strip("/")


def route_shape(path: str) -> tuple[str, ...]:
    """The segments with every ``:param`` made anonymous: two routes of one shape conflict."""
    return tuple(":" if s.startswith(":") else s for s in normalize_path(path).split("/")[1:])


def match_route(pattern: str, path: str) -> dict[str, str] | None:
    """Match a URL path against ``/todos/:id``; returns the path params or ``None``."""
    want = normalize_path(pattern).split("/")[1:]
    got = normalize_path(path).split("/")[1:]
    if len(want) != len(got):
        return None
    params: dict[str, str] = {}
    for w, g in zip(want, got, strict=True):
        if w.startswith(":") and len(w) > 1:
            if not g:
                return None
            params[w[1:]] = g
        elif w != g:
            return None
    return params


def route_specificity(pattern: str) -> int:
    """More literal segments win over parameters (``/todos/metrics`` beats ``/todos/:id``)."""
    return sum(1 for s in route_shape(pattern) if s != ":")


RESERVED_REQUEST_KEYS = frozenset(
    {
        "query_params",
        "path_params",
        "headers",
        "path",
        "method",
        "body",
        "trigger",
        "request_body",
        "response",
    }
)


def parse_body(content_type: str, raw: bytes) -> Any:
    """iii's rule: ``body`` is parsed JSON when the content type says JSON; otherwise, or when invalid, ``null``."""
    if "application/json" not in content_type.lower() or not raw:
        return None
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None


def api_request(
    *,
    pattern: str,
    method: str,
    path_params: dict[str, str],
    query_string: str,
    headers: list[tuple[str, str]],
    body: Any,
    compat: bool,
) -> dict[str, Any]:
    """The ApiRequest an ``http`` trigger's function receives (III-PROTOCOL §4.2).

    Header names are lower-case, each header and query parameter holds one string (the last one wins). R-3: a JSON
    object body is also spread at the top level, never over the request's own fields.
    """
    merged: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    request: dict[str, Any] = {
        "query_params": dict(parse_qsl(query_string, keep_blank_values=True)),
        "path_params": path_params,
        "headers": merged,
        "path": pattern,
        "method": method,
        "body": body,
        "trigger": {"type": "http", "path": pattern, "method": method},
    }
    if compat and isinstance(body, dict):
        for key, value in body.items():
            if key not in RESERVED_REQUEST_KEYS:
                request[key] = value
    return request


class HttpReply(msgspec.Struct, frozen=True):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


JSON_HEADERS = [("content-type", "application/json")]


def error_reply(
    status: int, code: str, message: str, *, error_id: str | None = None, skipped: bool | None = None
) -> HttpReply:
    """The engine's HTTP error envelope ``{"error": {"code", "message", "error_id"?}, "skipped"?}``."""
    error: dict[str, Any] = {"code": code, "message": message}
    if error_id is not None:
        error["error_id"] = error_id
    body: dict[str, Any] = {"error": error}
    if skipped is not None:
        body["skipped"] = skipped
    return HttpReply(status, list(JSON_HEADERS), _encoder.encode(body))


def _is_api_response(result: Any, *, compat: bool) -> bool:
    if not isinstance(result, dict):
        return False
    if "body" in result:
        return True
    for field in ("status_code", "statusCode") if compat else ("status_code",):
        value = result.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return True
    return False


def _reply_headers(raw: Any) -> list[tuple[str, str]]:
    """``headers`` is an object or an array of ``"Name: value"`` strings."""
    out: list[tuple[str, str]] = []
    if isinstance(raw, dict):
        for name, value in raw.items():
            out.append((str(name).lower(), value if isinstance(value, str) else _encoder.encode(value).decode()))
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, str) and ":" in item:
                name, _, value = item.partition(":")
                out.append((name.strip().lower(), value.strip()))
    return out


def http_reply(result: Any, *, compat: bool) -> HttpReply:
    """Shape a handler's result into the HTTP response.

    An ApiResponse ``{status_code?=200, headers?, body?={}}`` is honoured; with R-4 (``compat``) any other result is
    the body itself (200, JSON, ``null`` as ``null``). Without R-4 a non-ApiResponse answers 200 ``{}``, as the
    engine does, except that a missing result fails at once instead of hanging (the engine waits on a response
    channel that ripple does not provide).
    """
    if not compat and (result is None or result is msgspec.UNSET):
        return error_reply(
            500,
            "no_response",
            "the handler returned no response (ripple does not stream responses through a channel)",
        )
    if result is msgspec.UNSET:
        result = None
    if not _is_api_response(result, compat=compat):
        if not compat:
            return HttpReply(200, list(JSON_HEADERS), b"{}")
        return HttpReply(200, list(JSON_HEADERS), _encoder.encode(result))
    status = result.get("status_code")
    if status is None and compat:
        status = result.get("statusCode")
    if not isinstance(status, int | float) or isinstance(status, bool) or not 100 <= int(status) <= 599:
        status = 200
    headers = _reply_headers(result.get("headers"))
    body = result.get("body", {})
    content_type = next((v for n, v in headers if n == "content-type"), None)
    if isinstance(body, str) and content_type is not None and "json" not in content_type.lower():
        return HttpReply(int(status), headers, body.encode())
    if content_type is None:
        headers.append(("content-type", "application/json"))
    return HttpReply(int(status), headers, _encoder.encode(body))
