"""Shared test helpers: one timeout unit scaled by RIPPLE_TEST_TIMEOUT_FACTOR, soak counts, temp databases."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
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


# -- the conformance suite (DESIGN §11): tests marked ``conformance`` (a test, or a module's ``pytestmark``) that use
# the ``store`` or ``location`` fixture run once per backend. PostgreSQL runs need RIPPLE_TEST_PG (.ci/postgres sets
# it; CI always does) and skip with a message without it.
BACKENDS = ("sqlite", "postgresql")
PG_URL = os.environ.get("RIPPLE_TEST_PG")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wants = {"store", "location"} & set(metafunc.fixturenames)
    if wants and metafunc.definition.get_closest_marker("conformance") is not None:
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "sqlite"))


def pg_schema_url(url: str, schema: str) -> str:
    """``url`` with ``schema`` as the search path: one database, one independent ripple log per schema."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty schema on the test PostgreSQL (dropped afterwards), as a URL for ``Store.open``."""
    if not PG_URL:
        pytest.skip("RIPPLE_TEST_PG is not set: run the PostgreSQL tests under .ci/postgres (CI always does)")
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    yield pg_schema_url(PG_URL, schema)
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def location(request: pytest.FixtureRequest, backend: str, db_path: Path) -> str | Path:
    """Where a test's store lives: the SQLite file ``db_path``, or a fresh PostgreSQL schema."""
    if backend == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return db_path


@pytest.fixture
async def store(location: str | Path) -> AsyncIterator[Store]:
    async with Store.open(location) as s:
        yield s


ROOT = Path(__file__).resolve().parent.parent


def ripple_env(**extra: str) -> dict[str, str]:
    """The environment for a ``python -m ripple`` child: this checkout first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


RIPPLE = [sys.executable, "-m", "ripple"]
