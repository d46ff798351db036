"""A malformed ``Idempotency-Key`` is refused with a message that says what is allowed: printable ASCII, 1-256."""

from __future__ import annotations

import pytest

from tests.http.conftest import Live, error_of


@pytest.mark.parametrize("value", ["é".encode(), "ключ".encode(), b"caf\xe9", b"x" * 257])
async def test_a_bad_idempotency_key_names_the_rule(live: Live, value: bytes) -> None:
    response = await live.client.put("/v1/state/s/k", json=1, headers={b"Idempotency-Key": value})
    error = error_of(response, 400, "bad_request")
    assert "printable ASCII" in error["message"] and "1-256" in error["message"], error
    assert error["detail"] == {"header": "Idempotency-Key"}
    await live.unchanged(0)


async def test_a_control_character_in_the_key_is_refused(live: Live) -> None:
    """httptools refuses a DEL in any header value before ripple sees the request, where h11 lets it through to
    ripple's own check: a 400 with the JSON error body either way, and nothing is written."""
    response = await live.client.put("/v1/state/s/k", json=1, headers={b"Idempotency-Key": b"a\x7fb"})
    error = error_of(response, 400, "bad_request")
    assert "printable ASCII" in error["message"] or error["message"] == "Invalid HTTP request received.", error
    await live.unchanged(0)


async def test_every_printable_ascii_character_is_allowed(live: Live) -> None:
    key = "".join(chr(c) for c in range(0x21, 0x7F))
    first = await live.client.put("/v1/state/s/k", json=1, headers={"Idempotency-Key": key})
    again = await live.client.put("/v1/state/s/k", json=1, headers={"Idempotency-Key": key})
    assert first.status_code == 201 and again.json() == first.json()
