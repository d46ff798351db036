"""The API docs page (``/schema``) works without a network: every script, stylesheet and icon it names is served by
ripple itself from files inside the package (DESIGN §8), so the page is not blank on a machine with no internet."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

import ripple
from tests.http.conftest import Live

ASSETS = Path(ripple.__file__).parent / "http" / "assets" / "swagger-ui"
TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",), ".png": ("image/png",)}


class Links(HTMLParser):
    """Every URL the page makes the browser load: src and href attributes, and url(...) in inline styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]

    def handle_data(self, data: str) -> None:
        self.urls += re.findall(r"url\(['\"]?([^'\")]+)", data)


@pytest.mark.parametrize("page", ["/schema", "/schema/swagger"])
async def test_the_docs_page_loads_only_same_origin_assets(live: Live, page: str) -> None:
    r = await live.client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    links = Links()
    links.feed(r.text)
    assert {Path(urlsplit(u).path).suffix for u in links.urls} >= {".js", ".css", ".png"}, links.urls
    for url in links.urls:
        absolute = urljoin(live.url + page, url)
        assert urlsplit(absolute).netloc == urlsplit(live.url).netloc, f"{url} is not same-origin"
        asset = await live.client.get(absolute)
        assert asset.status_code == 200, url
        suffix = Path(urlsplit(absolute).path).suffix
        assert asset.headers["content-type"].split(";")[0] in TYPES[suffix], (url, asset.headers["content-type"])
        assert asset.content == (ASSETS / Path(urlsplit(absolute).path).name).read_bytes()
    assert "SwaggerUIBundle(" in r.text  # the page really starts the UI from the served bundle


async def test_assets_are_not_in_the_api_document_and_unknown_ones_are_404(live: Live) -> None:
    doc = (await live.client.get("/schema/openapi.json")).json()
    assert not [p for p in doc["paths"] if "assets" in p]
    missing = await live.client.get("/schema/assets/swagger-ui/nope.js")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_the_vendored_files_are_in_the_package_data() -> None:
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"http/assets/swagger-ui/*"' in pyproject
    assert {p.name for p in ASSETS.iterdir()} >= {"swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                                                  "swagger-ui.css", "favicon-32x32.png", "LICENSE", "NOTICE"}
