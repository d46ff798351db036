"""Shared test helpers: one timeout unit scaled by RIPPLE_TEST_TIMEOUT_FACTOR, soak counts, temp databases."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ripple import Store

FACTOR = float(os.environ.get("RIPPLE_TEST_TIMEOUT_FACTOR", "1"))
SECOND = 1.0 * FACTOR
SOAK = os.environ.get("RIPPLE_SOAK") == "1"


def count(ci: int, soak: int) -> int:
    """A test size from DESIGN §14: the CI count, or the soak count with RIPPLE_SOAK=1."""
    return soak if SOAK else ci


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "test.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    async with Store.open(db_path) as s:
        yield s


ROOT = Path(__file__).resolve().parent.parent


def ripple_env(**extra: str) -> dict[str, str]:
    """The environment for a ``python -m ripple`` child: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


RIPPLE = [sys.executable, "-m", "ripple"]
