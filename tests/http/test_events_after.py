"""``GET /v1/events?after=N`` with N beyond the head is refused (DESIGN §8), as the WebSocket refuses it: an
``after`` the log has not reached would otherwise skip every event written up to N without a word."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import SECOND
from tests.http.conftest import Live, error_of


async def test_after_beyond_the_head_is_400_with_earliest_and_head(live: Live) -> None:
    for i in range(3):
        await live.store.set("s", f"k{i}", i)
    error = error_of(await live.client.get("/v1/events", params={"after": 4}), 400, "offset_out_of_range")
    assert error["detail"] == {"after": 4, "earliest": 1, "head": 3}
    assert "beyond the head" in error["message"]
    at_head = await live.client.get("/v1/events", params={"after": 3})
    assert at_head.status_code == 200 and at_head.json() == {"events": [], "next_after": 3, "head": 3}


async def test_a_long_poll_beyond_the_head_is_refused_at_once(live: Live) -> None:
    """Before the fix it waited, then answered ``next_after: N`` and so skipped the events written meanwhile."""
    await live.store.set("s", "k", 1)
    poll = asyncio.ensure_future(live.client.get("/v1/events", params={"after": 5, "wait": 30}))
    done, _ = await asyncio.wait({poll}, timeout=10 * SECOND)
    assert poll in done, "the long-poll waited instead of refusing an offset beyond the head"
    error = error_of(poll.result(), 400, "offset_out_of_range")
    assert error["detail"]["head"] == 1 and error["detail"]["earliest"] == 1


async def test_after_zero_on_an_empty_log_is_fine(live: Live) -> None:
    r = await live.client.get("/v1/events", params={"after": 0})
    assert r.status_code == 200 and r.json() == {"events": [], "next_after": 0, "head": 0}
    error_of(await live.client.get("/v1/events", params={"after": 1}), 400, "offset_out_of_range")


@pytest.mark.parametrize("path", ["/v1/events?scpe=a", "/v1/state/a?lmit=5", "/v1/state/a/k?at=1&x=2",
                                  "/v1/events?scope=a&kinds=state"])
async def test_an_unknown_query_parameter_is_refused(live: Live, path: str) -> None:
    """A misspelt filter must not turn into an unfiltered read."""
    error = error_of(await live.client.get(path), 400, "bad_request")
    assert "unknown query parameter" in error["message"] and error["detail"]["parameter"] in ("scpe", "lmit", "x",
                                                                                              "kinds")
    assert (await live.client.get("/v1/events?scope=a&kind=state&token=ignored")).status_code == 200
