"""ripple.js under access control, in Node against a real ``ripple serve --auth``: 401 and 403 as UnauthorizedError and
ForbiddenError, ``whoami()``, subscriptions that stop (never reconnect) when their token is refused or revoked while
open (``clients/js/test/auth.test.js``); and the client's grant matching agrees with the server's (``fnmatchcase``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from fnmatch import fnmatchcase

import pytest
import pytest_asyncio

from tests.browser.conftest import CLIENT_JS
from tests.browser.test_ripple_js_node import run_node
from tests.conftest import RIPPLE
from tests.fault.child import ServeChild
from tests.security.conftest import new_token

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServeChild]:
    child = await ServeChild(tmp_path_factory.mktemp("jsauth") / "jsauth.db", "--auth").start()
    try:
        yield child
    finally:
        await child.stop()


async def test_auth_errors_in_node(server: ServeChild) -> None:
    tokens = {
        "reader": new_token(server.db_file, "reader", scopes=["notes:r", "todo*:r"]),
        "writer": new_token(server.db_file, "writer", scopes=["notes:rw"]),
        "admin": new_token(server.db_file, "admin", admin=True),
        "revocable": ["revocable", new_token(server.db_file, "revocable", scopes=["notes:r"])],
    }
    env = {
        "RIPPLE_AUTH_URL": server.url,
        "RIPPLE_AUTH_TOKENS": json.dumps(tokens),
        "RIPPLE_REVOKE": json.dumps([*RIPPLE, "token", "revoke", "--db", str(server.db)]),
    }
    out = await run_node("--test", "test/auth.test.js", env=env, seconds=120)
    assert "# pass 0" not in out and "# skipped 0" in out, out[-3000:]


# Patterns and names where a port of fnmatch could go wrong: sets, negation, ranges (also empty and reversed ones),
# a `]` first in a set, an unclosed `[`, regex metacharacters, astral characters, `-` at either end of a set.
PATTERNS = [
    "todos", "todos*", "*", "*-metrics", "t?dos", "[a-c]x", "[!a]x", "[]]x", "[!]]x", "q[", "[z-a]x", "[--a]x",
    "[a-]x", "[-a]x", "[!-a]x", "a.b", "a+b", "(x)|y", "^$", "x{2}", "[\\]x", "\\*", "😀?", "?😀", "[😀-😂]",
    "[a-c-e]x", "[!]x", "[]x", "**a", "[[]x", "[^a]x", "[a^]x", "t*s*", "[a-z0-9_]*", "[!z-a]x", "[z-a-c]x",
]
NAMES = [
    "todos", "todos-archive", "todo-metrics", "tidos", "t/dos", "ax", "bx", "cx", "dx", "]x", "!x", "q[", "zx",
    ",x", "-x", "ax", "a.b", "aXb", "a+b", "aab", "(x)|y", "x", "^$", "xx", "x{2}", "\\x", "\\*", "*", "😀😀",
    "😀", "a😀", "😁", "ex", "[x", "^x", "a", "ba", "tas", "t", "[]x", "foo_1",
]


async def test_grant_matching_agrees_with_the_server() -> None:
    """Access.mayRead (ripple.js) against fnmatchcase (the server) over every pattern and name above."""
    script = """
      import { Access } from './ripple.js';
      const [patterns, names] = JSON.parse(process.env.GLOB_CASES);
      const out = patterns.map((p) => {
        const access = new Access({ auth: true, scopes: [p + ':r'] });
        return names.map((n) => access.mayRead(n));
      });
      console.log(JSON.stringify(out));
    """
    out = await run_node("--input-type=module", "-e", script, env={"GLOB_CASES": json.dumps([PATTERNS, NAMES])},
                         seconds=30)
    got = json.loads(out.strip().splitlines()[-1])
    wrong = [(p, n, g) for p, row in zip(PATTERNS, got, strict=True) for n, g in zip(NAMES, row, strict=True)
             if g != fnmatchcase(n, p)]
    assert not wrong, wrong
    assert (CLIENT_JS / "ripple.js").exists()
