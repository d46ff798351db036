"""The RBAC port's rules (ripple.iii.rbac): filters, the call decision, prefixes, auth results. No sockets."""

from __future__ import annotations

from typing import Any

import pytest

from ripple.auth.grants import Identity
from ripple.iii.rbac import (
    INFRASTRUCTURE,
    AuthResult,
    FunctionFilter,
    RbacConfig,
    Session,
    default_auth,
    parse_auth_result,
    parse_filter,
    wildcard_match,
)


def test_wildcards_are_anchored_and_literal_but_for_the_star() -> None:
    assert wildcard_match("api::*", "api::users::list") and not wildcard_match("api::*", "x::api::y")
    assert wildcard_match("*::public", "a::b::public") and not wildcard_match("*::public", "a::public::b")
    assert wildcard_match("api::*::read", "api::orders::read") and not wildcard_match("api::*::read", "api::read")
    assert wildcard_match("*", "") and wildcard_match("a.b", "a.b") and not wildcard_match("a.b", "axb")
    assert not wildcard_match("[ab]", "a") and wildcard_match("[ab]", "[ab]")  # no fnmatch classes: literal


def test_filters_parse_the_engine_syntax() -> None:
    assert parse_filter('match("api::*")') == FunctionFilter(pattern="api::*")
    assert parse_filter("match('api::*')") == FunctionFilter(pattern="api::*")
    assert parse_filter("api::*") == FunctionFilter(pattern="api::*")  # the bare pattern, for the command line
    meta = parse_filter('{"metadata": {"public": true, "name": "match(\\"*pub*\\")"}}')
    assert meta.metadata == {"public": True, "name": 'match("*pub*")'}
    for bad in ("", "  ", '{"metadata": {}}', '{"meta": {"a": 1}}', '{"metadata": {"a": 1}, "x": 2}', "{nope"):
        with pytest.raises(ValueError):
            parse_filter(bad)
    assert str(parse_filter("match('x::*')")) == 'match("x::*")'


def test_metadata_filters_compare_json_values() -> None:
    public = parse_filter('{"metadata": {"public": true}}')
    assert public.matches("any", {"public": True, "other": 1})
    assert not public.matches("any", {"public": 1})  # JSON true is not 1
    assert not public.matches("any", {"public": False}) and not public.matches("any", None)
    named = parse_filter('{"metadata": {"tier": "free", "name": "match(\\"*public*\\")"}}')
    assert named.matches("f", {"tier": "free", "name": "my-public-fn"})
    assert not named.matches("f", {"tier": "free", "name": 7}) and not named.matches("f", {"name": "public"})
    assert parse_filter('{"metadata": {"n": 1}}').matches("f", {"n": 1.0})
    assert parse_filter('{"metadata": {"tags": ["a", true]}}').matches("f", {"tags": ["a", True]})


def session(token: str | None = None, **auth: Any) -> Session:
    config = RbacConfig(expose_functions=(parse_filter("api::*"), parse_filter('{"metadata": {"public": true}}')))
    return Session(config, AuthResult(**auth), token)


def test_the_call_decision_in_the_engines_order() -> None:
    s = session(allowed_functions=["internal::extra", "api::gone"],
                forbidden_functions=["api::gone", "engine::log::info"])
    assert s.may_call("api::users") and s.may_call("internal::extra")  # exposed; allowed by the auth result
    assert not s.may_call("api::gone")  # forbidden beats allowed and exposed
    assert not s.may_call("internal::secret") and s.may_call("internal::secret", {"public": True})
    assert all(s.may_call(f) for f in INFRASTRUCTURE - {"engine::log::info"})
    assert not s.may_call("engine::log::info")  # the carve-out yields to forbidden_functions
    assert not s.may_call("engine::functions::list")  # discovery is not infrastructure
    assert "rbac.expose_functions" in s.refusal("internal::secret").message
    assert s.refusal("api::gone").code == "FORBIDDEN" and "rbac.forbidden_functions" in s.refusal("api::gone").message


def test_a_ripple_token_reaches_the_data_builtins_its_grants_allow() -> None:
    assert not session().may_call("state::get", data_builtin=True)  # no token: only the filters
    assert session(token="web").may_call("state::get", data_builtin=True)
    assert not session(token="web").may_call("stream::set(todo)")  # a worker's function, not ripple's data built-in
    assert not session(token="web", forbidden_functions=["state::set"]).may_call("state::set", data_builtin=True)


def test_prefixes_and_trigger_types() -> None:
    s = session(function_registration_prefix="tenant", allowed_trigger_types=["cron"])
    assert s.registered_id("echo") == "tenant::echo" and s.wire_id("tenant::echo") == "echo"
    assert s.wire_id("other::echo") == "other::echo"
    assert session().registered_id("echo") == "echo" and session().wire_id("echo") == "echo"
    assert s.may_use_trigger_type("cron") and not s.may_use_trigger_type("state")
    assert session().may_use_trigger_type("anything")


def test_auth_results_take_the_engines_defaults() -> None:
    assert parse_auth_result({}) == AuthResult()
    assert AuthResult().allow_function_registration and not AuthResult().allow_trigger_type_registration
    dumped = {"allowed_functions": ["a"], "allowed_trigger_types": None, "function_registration_prefix": None,
              "context": {"user_id": "u"}, "allow_trigger_type_registration": True}  # pydantic's model_dump()
    result = parse_auth_result(dumped)
    assert result.allowed_functions == ["a"] and result.allowed_trigger_types is None
    assert result.context == {"user_id": "u"} and result.allow_trigger_type_registration
    bad: Any
    for bad in (None, "yes", {"allowed_functions": "a"}, {"context": []}):
        with pytest.raises(ValueError):
            parse_auth_result(bad)
    assert default_auth(Identity("web")).context == {"token": "web"}
    assert default_auth(None).allow_trigger_type_registration  # no --auth: the engine's defaults
    # a ripple token alone registers only when it is a worker token (admin tokens are worker tokens)
    reader, worker = default_auth(Identity("web")), default_auth(Identity("svc", worker=True))
    assert not reader.allow_function_registration and reader.allowed_trigger_types == []
    assert not reader.allow_trigger_type_registration
    assert worker.allow_function_registration and worker.allowed_trigger_types is None
