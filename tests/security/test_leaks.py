"""Property: a subscription never carries an event of a scope its token may not read (DESIGN §15).

For random grants, random writes (state and stream, before and after connecting) and a random subscription filter,
``/v1/subscribe`` either refuses with ``forbidden`` (and ``GET /v1/events`` with 403) or delivers exactly the matching
events — every one of them readable by the token — through catch-up and live delivery alike.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect

from ripple.auth.grants import Identity, parse_grant
from ripple.core.filter import Filter
from tests.conftest import SECOND, count
from tests.security.conftest import BackgroundServer, Served, high_limit_security, new_token

SCOPES = ["a", "b", "c"]
STREAMS = ["a", "x"]
grants = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "[ab]", "*"]), st.sampled_from(["r", "rw"])),
                  max_size=3)
stream_grants = st.lists(st.tuples(st.sampled_from(["a", "x", "*"]), st.just("r")), max_size=2)
writes = st.lists(st.one_of(st.tuples(st.just("state"), st.sampled_from(SCOPES)),
                            st.tuples(st.just("stream"), st.sampled_from(STREAMS))), max_size=8)
_names = itertools.count()


@pytest.fixture(scope="module")
def background(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    server = BackgroundServer(tmp_path_factory.mktemp("leaks") / "l.db", security=high_limit_security())
    with server:
        yield server


async def write(served: Served, items: list[tuple[str, str]], tag: str) -> None:
    for i, (kind, name) in enumerate(items):
        if kind == "state":
            await served.store.set(name, f"{tag}{i}", {"i": i})
        else:
            await served.store.send(name, "g", "t", {"i": i})


def readable(identity: Identity, event: dict[str, Any]) -> bool:
    if event["kind"] == "state":
        return identity.may_read(event["scope"])
    return identity.may_read_stream(event["scope"])


async def scenario(served: Served, scope_grants: list[tuple[str, str]], streams: list[tuple[str, str]],
                   before: list[tuple[str, str]], after: list[tuple[str, str]], kind: str, scopes: set[str]) -> None:
    n = next(_names)
    scope_texts = [f"{p}:{a}" for p, a in scope_grants]
    stream_texts = [f"{p}:{a}" for p, a in streams] or ["nothing:r"]
    token = await asyncio.to_thread(new_token, served.db, f"leak{n}", scopes=scope_texts, streams=stream_texts)
    identity = Identity(f"leak{n}", tuple(map(parse_grant, scope_texts)), tuple(map(parse_grant, stream_texts)))
    wanted = Filter.of(kind, scopes)  # type: ignore[arg-type]
    start = served.store.head
    await write(served, before, f"b{n}-")
    query = "&".join([f"kind={kind}", f"after={start}", *(f"scope={s}" for s in sorted(scopes))])
    async with httpx.AsyncClient(base_url=served.url, headers={"authorization": f"Bearer {token}"}) as client:
        page = await client.get(f"/v1/events?{query}")
    allowed = identity.may_follow(wanted)
    if not allowed:
        assert page.status_code == 403, page.text
    else:
        assert page.status_code == 200, page.text
        assert all(readable(identity, e) for e in page.json()["events"])
    async with connect(f"ws://127.0.0.1:{served.port}/v1/subscribe?{query}&batch=50&token={token}") as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 5 * SECOND))
        if not allowed:
            assert first["type"] == "error" and first["code"] == "forbidden", first
            return
        assert first["type"] == "hello", first
        delivered: list[dict[str, Any]] = []
        live = False
        sentinel = None
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 5 * SECOND))
            if frame["type"] == "live" and not live:
                live = True  # caught up: now write more, and a sentinel the filter matches, to end the live part
                await write(served, after, f"a{n}-")
                name = sorted(scopes)[0]
                if kind == "stream":
                    sentinel = (await served.store.send(name, "g", "sentinel", None)).offset
                else:
                    sentinel = (await served.store.set(name, f"sentinel{n}", 1)).offset
            batch = frame["events"] if frame["type"] == "events" else [frame] if frame["type"] == "event" else []
            delivered += batch
            if sentinel is not None and any(e["offset"] == sentinel for e in batch):
                break
    assert all(readable(identity, e) for e in delivered), [e for e in delivered if not readable(identity, e)]
    expected = [e.offset for e in await served.store.read_events(start, 1000, kind="all")
                if wanted.matches(e) and sentinel is not None and e.offset <= sentinel]
    assert [e["offset"] for e in delivered] == expected


@given(data=st.data())
@settings(max_examples=count(40, 1000), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
def test_subscriptions_never_leak(background: BackgroundServer, data: st.DataObject) -> None:
    assert background.served is not None
    scope_grants, streams = data.draw(grants), data.draw(stream_grants)
    identity = Identity("x", tuple(parse_grant(f"{p}:{a}") for p, a in scope_grants),
                        tuple(parse_grant(f"{p}:{a}") for p, a in streams))
    kind = data.draw(st.sampled_from(["state", "stream", "all"]))
    names = ["a", "b", "c", "x"]
    followable = [n for n in names if identity.may_follow(Filter.of(kind, [n]))]  # type: ignore[arg-type]
    any_names = st.sets(st.sampled_from(names))
    mine = st.sets(st.sampled_from(followable), min_size=1)
    scopes = data.draw(st.one_of(mine, mine, mine, any_names)
                       if followable else any_names)
    hypothesis.event("allowed" if identity.may_follow(Filter.of(kind, scopes)) else "refused")  # type: ignore[arg-type]
    background.run(scenario(background.served, scope_grants, streams, data.draw(writes), data.draw(writes), kind,
                            scopes))
