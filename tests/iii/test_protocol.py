"""The sans-I/O iii protocol: frames, built-in inputs, trigger configs, payloads, compat rules. No sockets, no store."""

from __future__ import annotations

import msgspec
import pytest

from ripple import Event, Meta
from ripple.iii.protocol import (
    BadFrame,
    CronTriggerConfig,
    HttpTriggerConfig,
    IIIError,
    InvocationResult,
    InvocationResultOut,
    InvokeFunction,
    ProvidedTriggerConfig,
    RegisterFunction,
    RegisterTrigger,
    RegisterTriggerType,
    StateTriggerConfig,
    Telemetry,
    VoidAction,
    api_request,
    decode_client_frame,
    decode_frame,
    encode,
    http_reply,
    match_route,
    parse_body,
    parse_set,
    parse_stream_path,
    parse_stream_send,
    parse_trigger_config,
    state_payload,
    stream_envelope,
    stream_matches,
)
from ripple.iii.registry import Registry


def test_frames_route_on_the_lowercase_type_and_ignore_unknown_fields() -> None:
    frame = decode_frame(
        '{"type":"registertrigger","message_type":"registertrigger","id":"t1","trigger_type":"state",'
        '"function_id":"f","config":{"scope":"todos"},"namespace":"x"}'
    )
    assert frame == RegisterTrigger("t1", "state", "f", {"scope": "todos"})
    assert decode_frame(b'{"type":"registerfunction","id":"f"}') == RegisterFunction("f")  # JSON in binary frames


def test_invoke_accepts_any_string_invocation_id_r0_and_void_action() -> None:
    frame = decode_frame(
        '{"type":"invokefunction","invocation_id":"not-a-uuid","function_id":"f","data":1,"action":{"type":"void"}}'
    )
    assert isinstance(frame, InvokeFunction)
    assert frame.invocation_id == "not-a-uuid" and isinstance(frame.action, VoidAction)


def test_invocation_result_keeps_absent_apart_from_null() -> None:
    absent = decode_frame('{"type":"invocationresult","invocation_id":"i","function_id":"f"}')
    null = decode_frame('{"type":"invocationresult","invocation_id":"i","function_id":"f","result":null}')
    assert isinstance(absent, InvocationResult) and absent.result is msgspec.UNSET
    assert isinstance(null, InvocationResult) and null.result is None
    assert encode(InvocationResultOut("i", "f")) == b'{"type":"invocationresult","invocation_id":"i","function_id":"f"}'
    assert b'"result":null' in encode(InvocationResultOut("i", "f", result=None))


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        ("{not json", "invalid_json"),
        ("[1,2]", "invalid_json"),
        ('{"no_type":1}', "invalid_message"),
        ('{"type":"teleport","x":1}', "unknown_type"),
        ('{"type":"registerfunction"}', "invalid_message"),
        ('{"type":"registertrigger","id":"t","trigger_type":7,"function_id":"f"}', "invalid_message"),
    ],
)
def test_bad_frames_are_classified(frame: str, kind: str) -> None:
    bad = decode_frame(frame)
    assert isinstance(bad, BadFrame) and bad.kind == kind, bad


def test_a_malformed_invoke_still_names_its_call() -> None:
    bad = decode_frame('{"type":"invokefunction","invocation_id":"i9","function_id":7}')
    assert isinstance(bad, BadFrame) and bad.invocation_id == "i9" and bad.kind == "invalid_message"


@pytest.mark.parametrize("prefix", [b"OTLP", b"MTRC", b"LOGS"])
def test_binary_telemetry_is_recognised(prefix: bytes) -> None:
    assert decode_frame(prefix + b"\x00\x01{}") == Telemetry(prefix.decode(), 8)


def test_state_set_input_value_and_its_data_alias() -> None:
    assert parse_set({"scope": "s", "key": "k", "value": {"a": 1}}) == ("s", "k", {"a": 1})
    assert parse_set({"scope": "s", "key": "k", "data": 2, "extra": True}) == ("s", "k", 2)
    with pytest.raises(IIIError) as err:
        parse_set({"scope": "s", "value": 1})
    assert err.value.code == "deserialization_error"
    assert err.value.message == "Failed to deserialize input for state::set: missing field `key`"
    with pytest.raises(IIIError):
        parse_set({"scope": 1, "key": "k", "value": 1})
    with pytest.raises(IIIError):
        parse_set(None)


def test_stream_send_type_and_the_event_type_alias_r5() -> None:
    data = {"stream_name": "s", "group_id": "g", "event_type": "e", "data": {"x": 1}}
    assert parse_stream_send(data, compat=True).type == "e"
    assert parse_stream_send({**data, "type": "t"}, compat=True).type == "t"  # `type` wins
    with pytest.raises(IIIError) as err:
        parse_stream_send(data, compat=False)
    assert err.value.code == "deserialization_error"


def test_trigger_configs_and_provided_types() -> None:
    assert parse_trigger_config("state", {"scope": "todos"}) == StateTriggerConfig("todos")
    assert parse_trigger_config("state", None) == StateTriggerConfig()
    http = parse_trigger_config("http", {"api_path": "todos/:id/", "http_method": "post"})
    assert http == HttpTriggerConfig("/todos/:id", "POST")
    assert parse_trigger_config("cron", {"expression": "0 * * * * *"}) == CronTriggerConfig("0 * * * * *")
    # A type ripple does not provide: the config is kept as sent, for the worker that provides the type.
    provided = parse_trigger_config("webhook", {"url": "/hooks", "condition_function_id": "c"})
    assert provided == ProvidedTriggerConfig({"url": "/hooks", "condition_function_id": "c"}, "c")
    bad_configs = [
        ("state", {"scope": 5}),
        ("http", {}),
        ("http", {"api_path": "/x", "http_method": "BREW"}),
        ("cron", {"expression": ""}),
        ("cron", {"expression": "* * *"}),
        ("subscribe", {}),
        ("durable:subscriber", {"topic": 3}),
    ]
    for bad in bad_configs:
        with pytest.raises(IIIError) as err:
            parse_trigger_config(*bad)
        assert err.value.code == "trigger_registration_failed"


def test_state_trigger_payload_is_exactly_the_engines() -> None:
    event = Event(7, 1, "state", "todos", "a", "set", "created", 1, None, {"id": "a"}, Meta())
    assert msgspec.to_builtins(state_payload(event)) == {
        "type": "state",
        "event_type": "state:created",
        "scope": "todos",
        "key": "a",
        "old_value": None,
        "new_value": {"id": "a"},
    }


def test_stream_envelope_and_matching_rule() -> None:
    event = Event(9, 1000, "stream", "live", "all", "send", "changed", 0, None, {"x": 1}, Meta(id="m1"))
    assert msgspec.to_builtins(stream_envelope(event)) == {
        "type": "stream",
        "timestamp": 1000,
        "streamName": "live",
        "groupId": "all",
        "id": "m1",
        "event": {"type": "event", "event": {"type": "changed", "data": {"x": 1}}},
        "offset": 9,
    }
    assert stream_matches("live", "all", None, event)
    assert stream_matches("live", "all", "m1", event)
    assert not stream_matches("live", "all", "m2", event)
    assert not stream_matches("live", "other", None, event)


def test_stream_paths_r2() -> None:
    assert parse_stream_path("/") == "root"
    found = parse_stream_path("/stream/todos-live/all?after=12")
    assert (
        found is not None and found != "root" and (found.stream, found.group, found.after) == ("todos-live", "all", 12)
    )
    assert parse_stream_path("/elsewhere") is None
    with pytest.raises(ValueError):
        parse_stream_path("/stream/a/b?after=-1")
    with pytest.raises(ValueError):
        parse_stream_path("/stream/a/b?aftr=1")


def test_client_frames() -> None:
    join = decode_client_frame('{"type":"join","data":{"subscriptionId":"s","streamName":"a","groupId":"b"}}')
    assert join is not None and join.data.streamName == "a"
    assert decode_client_frame("garbage") is None
    assert decode_client_frame('{"type":"dance"}') is None


def test_routes_match_params_and_prefer_literals() -> None:
    assert match_route("/todos/:id", "/todos/7") == {"id": "7"}
    assert match_route("/todos/:id", "/todos") is None
    assert match_route("todos", "/todos/") == {}
    registry = Registry()
    registry.add_trigger("w", RegisterTrigger("t1", "http", "one", {"api_path": "/todos/:id"}))
    registry.add_trigger("w", RegisterTrigger("t2", "http", "metrics", {"api_path": "/todos/metrics"}))
    found = registry.route("GET", "/todos/metrics")
    assert found is not None and found[0].function_id == "metrics"
    with pytest.raises(IIIError) as err:  # same method and shape as t1, other parameter names
        registry.add_trigger("w2", RegisterTrigger("t3", "http", "other", {"api_path": "/todos/:key"}))
    assert (err.value.code, err.value.message) == (
        "trigger_registration_failed",
        "Route 'GET /todos/:key' conflicts with already-registered route 'GET /todos/:id': routes with identical "
        "structure but different path-parameter names are not supported",
    )
    # The same route again moves it to the newer trigger, as the engine does; removing the older one keeps it.
    registry.add_trigger("w2", RegisterTrigger("t4", "http", "newer", {"api_path": "todos/:id"}))
    found = registry.route("GET", "/todos/7")
    assert found is not None and found[0].function_id == "newer"
    registry.remove_trigger("w", "t1")
    found = registry.route("GET", "/todos/7")
    assert found is not None and found[0].function_id == "newer"


def test_registry_ownership_and_replay() -> None:
    registry = Registry(frozenset({"state::set"}))
    assert registry.add_function("w1", RegisterFunction("f")) is None
    assert registry.add_function("w1", RegisterFunction("f")) is None  # the same worker again: fine
    rejected = registry.add_function("w2", RegisterFunction("f"))
    assert rejected is not None and rejected.owner_worker_id == "w1" and rejected.code == "FUNCTION_NAMESPACE_CONFLICT"
    assert registry.add_function("w2", RegisterFunction("state::set")) is not None
    registry.add_trigger("w1", RegisterTrigger("t", "state", "f", {}))
    _, replaced, status = registry.add_trigger("w3", RegisterTrigger("t", "state", "f", {}))  # replay: same id
    assert replaced is not None and len(registry.triggers) == 1 and status == "live"
    assert registry.drop_worker("w1") == (["f"], [], [])
    assert registry.functions == {}


def test_registry_provided_trigger_types() -> None:
    registry = Registry()
    _, _, status = registry.add_trigger("consumer", RegisterTrigger("t1", "tick", "f", {"every": 1}))
    assert status == "pending" and "t1" in registry.pending
    assert registry.add_trigger_type("provider", RegisterTriggerType("http")) is None  # ripple's own type
    bound = registry.add_trigger_type("provider", RegisterTriggerType("tick", "ticks"))
    assert [t.id for t in bound or []] == ["t1"] and "t1" in registry.triggers and not registry.pending
    assert registry.provider("tick") == "provider"
    _, _, orphaned = registry.drop_worker("provider")  # the provider goes: its bindings wait again
    assert [t.id for t in orphaned] == ["t1"] and "t1" in registry.pending and registry.provider("tick") is None
    bound = registry.add_trigger_type("provider2", RegisterTriggerType("tick", "ticks"))
    assert [t.id for t in bound or []] == ["t1"]
    _, removed, _ = registry.drop_worker("consumer")
    assert [t.id for t in removed] == ["t1"] and not registry.triggers


def test_api_request_shape_and_r3() -> None:
    request = api_request(
        pattern="/todos/:id",
        method="POST",
        path_params={"id": "7"},
        query_string="q=x&q=y&z=",
        headers=[("Content-Type", "application/json"), ("X-A", "1"), ("x-a", "2")],
        body={"title": "milk", "path": "sneaky"},
        compat=True,
    )
    assert request["query_params"] == {"q": "y", "z": ""}
    assert request["headers"] == {"content-type": "application/json", "x-a": "1, 2"}
    assert request["path"] == "/todos/:id" and request["method"] == "POST"
    assert request["trigger"] == {"type": "http", "path": "/todos/:id", "method": "POST"}
    assert request["title"] == "milk"  # R-3
    assert request["path"] == "/todos/:id"  # never overwritten
    strict = api_request(
        pattern="/", method="GET", path_params={}, query_string="", headers=[], body={"title": "x"}, compat=False
    )
    assert "title" not in strict


def test_body_parsing() -> None:
    assert parse_body("application/json; charset=utf-8", b'{"a":1}') == {"a": 1}
    assert parse_body("application/json", b"{bad") is None
    assert parse_body("text/plain", b'{"a":1}') is None


def test_http_reply_api_response_and_r4() -> None:
    reply = http_reply({"status_code": 201, "headers": ["X-A: 1"], "body": {"ok": True}}, compat=True)
    assert reply.status == 201 and ("x-a", "1") in reply.headers and reply.body == b'{"ok":true}'
    assert http_reply({"status_code": 204}, compat=False).body == b"{}"  # a missing body is {}
    raw = http_reply({"headers": {"content-type": "text/plain"}, "body": "hi"}, compat=False)
    assert raw.body == b"hi" and ("content-type", "text/plain") in raw.headers
    assert http_reply({"statusCode": 202, "body": 1}, compat=True).status == 202
    # R-4: anything else is the body itself
    assert http_reply([1, 2], compat=True).body == b"[1,2]"
    assert http_reply({"deleted": "a"}, compat=True).body == b'{"deleted":"a"}'
    assert http_reply(None, compat=True).body == b"null"
    assert http_reply(msgspec.UNSET, compat=True).body == b"null"
    # strict: the engine's reading
    assert http_reply({"deleted": "a"}, compat=False).body == b"{}"
    assert http_reply(None, compat=False).status == 500  # never a hanging request
