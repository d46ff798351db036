"""The console's static files over HTTP: content types, the security headers, 304 on a repeat, a JSON 404 for anything
else (no way out of the folder), and nothing of it in the OpenAPI document."""

from __future__ import annotations

import pytest

from tests.conftest import ROOT
from tests.http.conftest import Live, error_of

CSP = "content-security-policy"


@pytest.mark.parametrize(
    ("path", "content_type", "needle"),
    [
        ("/", "text/html; charset=utf-8", b"<title>ripple console</title>"),
        ("/ripple.js", "text/javascript; charset=utf-8", b"export function subscribe"),
        ("/console/console.js", "text/javascript; charset=utf-8", b'from "./log.js"'),
        ("/console/console.css", "text/css; charset=utf-8", b"--row-h"),
    ],
)
async def test_console_files_are_served_with_their_type_and_headers(
    live: Live, path: str, content_type: str, needle: bytes
) -> None:
    response = await live.client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"] == content_type
    assert needle in response.content
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in response.headers[CSP] and "frame-ancestors 'none'" in response.headers[CSP]
    assert response.headers["cache-control"] == "no-cache"
    again = await live.client.get(path, headers={"if-none-match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


async def test_ripple_js_is_the_client_package_file(live: Live) -> None:
    response = await live.client.get("/ripple.js")
    assert response.content == (ROOT / "clients" / "js" / "ripple.js").read_bytes()


@pytest.mark.parametrize(
    "path",
    ["/console/nope.js", "/console/..%2Fhttp%2Fapp.py", "/console/%2E%2E%2F%2E%2E%2Fpyproject.toml", "/console/.x"],
)
async def test_anything_else_is_a_json_404(live: Live, path: str) -> None:
    error_of(await live.client.get(path), 404, "not_found")


async def test_the_console_is_not_part_of_the_api_document(live: Live) -> None:
    paths = (await live.client.get("/schema/openapi.json")).json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/console") or p == "/ripple.js"]
