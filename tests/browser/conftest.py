"""Real-browser and Node tests of the console, the todo page and ripple.js (issue 16).

Chromium is Debian's (``apt-get install chromium``, done by ``.ci/install-extras``), driven through the ``playwright``
package with its executable path (browser downloads are impossible here); one browser per test module, pages reused.
Node runs ripple.js's own tests (``node --test``) against a real ``ripple serve``. Where Chromium, playwright or Node
is missing the tests are skipped with a message saying what to install. Screenshots go to ``test-artifacts/browser/``
(gitignored).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import ROOT, SECOND

ARTIFACTS = ROOT / "test-artifacts" / "browser"
CLIENT_JS = ROOT / "clients" / "js"
CHROMIUM = os.environ.get("RIPPLE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MS = 1000 * SECOND  # playwright counts milliseconds


def node_or_skip() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("Node.js is not installed: apt-get install nodejs npm (see .ci/install-extras)")
    return node


def chromium_or_skip() -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM}: apt-get install chromium (see .ci/install-extras)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("the playwright package is missing: pip install -e '.[dev]'")


def screenshot_path(name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Any]:
    """One headless Chromium per test module; each launch runs on a fresh temporary profile (user-data dir)."""
    chromium_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            await instance.close()
