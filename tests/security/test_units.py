"""Pure parts of access control: host names, grants, identities, the failure limiter, token text."""

from __future__ import annotations

import pytest

from ripple.auth.book import FailureLimiter
from ripple.auth.grants import Identity, parse_grant
from ripple.auth.tokens import new_token, parse_duration_ms, token_hash
from ripple.core.filter import Filter
from ripple.core.names import item_scope
from ripple.errors import ForbiddenError, ValidationError
from ripple.http.boundary import Boundary, host_name


def test_host_names() -> None:
    assert host_name("LocalHost:8000") == "localhost"
    assert host_name("[::1]:8000") == "[::1]"
    assert host_name("::1") == "[::1]"
    assert host_name("127.0.0.1") == "127.0.0.1"
    boundary = Boundary.for_bind("0.0.0.0", ("db.example",))
    assert boundary.hosts == {"127.0.0.1", "localhost", "[::1]", "db.example"}
    assert Boundary.for_bind("192.168.1.9").host_allowed("192.168.1.9:8000")
    assert Boundary.for_bind("127.0.0.1", ("*",)).host_allowed("anything.example")



def test_grants_and_globs() -> None:
    reader = Identity("r", (parse_grant("todos*:r"),), (parse_grant("live:rw"),))
    assert reader.may_read("todos") and reader.may_read("todos-archive") and not reader.may_read("notes")
    assert not reader.may_write("todos")
    assert reader.may_read_stream("live") and reader.may_write_stream("live") and not reader.may_read("live")
    assert Identity("a", admin=True).may_write("anything")
    for bad in ("todos", "todos:w", ":r", "a\u200bb:r"):
        with pytest.raises(ValidationError):
            parse_grant(bad)
    assert str(parse_grant("a:b:rw")) == "a:b:rw"  # the last colon separates the access


def test_stream_grants_govern_the_scopes_of_stored_stream_items() -> None:
    reader = Identity("r", (parse_grant("todos:rw"),), (parse_grant("live:r"),))
    writer = Identity("w", streams=(parse_grant("live*:rw"),))
    one_group = Identity("g", (parse_grant("$stream:live:alice:rw"),))
    everything = Identity("all", (parse_grant("*:rw"),))
    items = item_scope("live", "g")
    assert reader.may_read(items) and not reader.may_write(items)  # live:r reads the items, writes need rw
    assert writer.may_write(items) and writer.may_write(item_scope("live-2", "g"))
    assert not reader.may_read(item_scope("other", "g")) and not reader.may_read(item_scope("todos", "g"))
    assert one_group.may_write(item_scope("live", "alice")) and not one_group.may_read(items)
    assert not one_group.may_read_stream("live")  # a group's items, not the stream's sends
    assert everything.may_write(items)  # a scope glob reaches item scopes too: they are scopes
    assert not reader.may_read("$stream:live")  # not an item scope: only scope grants count
    assert reader.may_follow(Filter.of("state", [items, "todos"]))
    with pytest.raises(ForbiddenError, match=r"may not write scope '\$stream:live:g' \(the items of stream 'live'\)"):
        reader.require_write(items)


def test_following_the_log_needs_named_readable_scopes() -> None:
    reader = Identity("r", (parse_grant("todos:r"),), (parse_grant("live:r"),))
    assert reader.may_follow(Filter.of("state", ["todos"]))
    assert reader.may_follow(Filter.of("stream", ["live"]))
    assert not reader.may_follow(Filter.of("state"))  # every scope: admin only
    assert not reader.may_follow(Filter.of("state", ["todos", "notes"]))
    assert not reader.may_follow(Filter.of("all", ["todos"]))  # the stream "todos" is not granted
    with pytest.raises(ForbiddenError):
        reader.require_follow(Filter.of("all"))
    assert Identity("a", admin=True).may_follow(Filter.of("all"))


def test_failure_limiter_refills() -> None:
    now = [0.0]
    limiter = FailureLimiter(burst=3, per_second=0.5, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.retry_after("a") is None
        limiter.failed("a")
    assert limiter.retry_after("a") == 2
    assert limiter.retry_after("b") is None  # per address
    now[0] += 2.0
    assert limiter.retry_after("a") is None


def test_tokens_are_256_random_bits_stored_as_sha256() -> None:
    token = new_token()
    assert token.startswith("rpl_") and len(token) == 4 + 43
    assert new_token() != token
    assert len(token_hash(token)) == 64 and token not in token_hash(token)
    assert parse_duration_ms("30d") == 30 * 86_400_000 and parse_duration_ms("15m") == 900_000
    for bad in ("0d", "30", "d", "1y", "-1h"):
        with pytest.raises(ValidationError):
            parse_duration_ms(bad)
