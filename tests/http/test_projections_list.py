"""``GET /v1/projections``: every registered projection with its version, status, checkpoint and lag (head -
checkpoint), without reading its data — a failed or rebuilding projection is listed, not refused."""

from __future__ import annotations

import asyncio
from typing import Any

from ripple import Event, Projection
from ripple.projections.base import Statement, Tables
from tests.conftest import SECOND
from tests.http.conftest import Live, error_of


def fold_refusing_bad(event: Event, tables: Tables) -> list[Statement]:
    if event.key == "bad":
        raise ValueError("cannot fold key 'bad'")
    return [(f"INSERT INTO {tables['keys']} (key) VALUES (?) ON CONFLICT DO NOTHING", (event.key,))]


def picky() -> Projection:
    return Projection(name="picky", version=3, schema="CREATE TABLE {keys} (key TEXT PRIMARY KEY);",
                      fold=fold_refusing_bad, scopes=["s"], mode="inline")


async def listing(live: Live) -> dict[str, Any]:
    r = await live.client.get("/v1/projections")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_every_registered_projection_with_its_lag(live: Live) -> None:
    assert await listing(live) == {
        "head": 0,
        "projections": [{"name": "metrics", "version": 1, "status": "ok", "checkpoint": 0, "lag": 0}],
    }
    live.store.register_projection(picky())
    await asyncio.wait_for(live.store.projections.wait_caught_up("picky"), 10 * SECOND)
    await live.store.set("s", "a", 1)
    await live.store.set("s", "bad", 1)  # picky fails here, at offset 2; writes go on
    for i in range(3):
        await live.store.set("s", f"k{i}", i)
    body = await listing(live)
    assert body["head"] == 5
    by_name = {p["name"]: p for p in body["projections"]}
    assert by_name["metrics"] == {"name": "metrics", "version": 1, "status": "ok", "checkpoint": 5, "lag": 0}
    failed = by_name["picky"]
    assert (failed["version"], failed["status"], failed["checkpoint"], failed["lag"]) == (3, "failed", 1, 4)
    assert "cannot fold key 'bad'" in failed["error"]
    # the single-projection route still answers for it (200 with its status, DESIGN §6)
    one = await live.client.get("/v1/projections/picky")
    assert one.status_code == 200 and one.json()["status"] == "failed"


async def test_the_list_is_in_the_openapi_document_and_takes_only_get(live: Live) -> None:
    doc = (await live.client.get("/schema/openapi.json")).json()
    get = doc["paths"]["/v1/projections"]["get"]
    schema = get["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"].endswith("/ProjectionList")
    summary = doc["components"]["schemas"]["ProjectionSummary"]
    assert {"name", "version", "status", "checkpoint", "lag"} <= set(summary["required"])
    error_of(await live.client.post("/v1/projections"), 405, "method_not_allowed")
