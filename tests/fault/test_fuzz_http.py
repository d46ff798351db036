"""Fuzzing the HTTP API (issue 9, part 5) from its own OpenAPI document with schemathesis, against a real
``ripple serve --app examples.todo:setup`` child: valid and invalid requests for every operation. No 5xx, no crash,
every 4xx leaves the head unchanged and carries the DESIGN §8 error body, and the server keeps answering."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode

from tests.conftest import RIPPLE, ROOT, SECOND, count, ripple_env
from tests.fault.child import TODO_APP, free_port

MAX_WAIT = 0.05  # GET /v1/events?wait= long-polls up to 60 s: the fuzzer's waits are capped so the run stays short


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], url: str) -> None:
        self.proc = proc
        self.url = url
        self.session = requests.Session()
        self.operations = 0
        self.statuses: dict[int, int] = {}

    def head(self) -> int:
        response = self.session.get(f"{self.url}/v1/health", timeout=10 * SECOND)
        assert response.status_code == 200, response.text
        head: int = response.json()["head"]
        return head


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    db = tmp_path_factory.mktemp("fuzz") / "fuzz.db"
    port = free_port()
    proc = subprocess.Popen(
        [*RIPPLE, "serve", str(db), "--port", str(port), "--app", TODO_APP],
        cwd=ROOT, env=ripple_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("ripple serving"), (line, proc.poll())
        yield Served(proc, f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30 * SECOND)
        assert proc.returncode == 0, err.decode()[-3000:]
        assert b"Traceback" not in err, err.decode()[-3000:]


def check_one(served: Served, case: Any) -> None:
    _cap_wait(case)
    before = served.head()
    response = case.call(base_url=served.url, session=served.session, timeout=30 * SECOND)
    served.statuses[response.status_code] = served.statuses.get(response.status_code, 0) + 1
    case.validate_response(response, checks=[not_a_server_error])
    if 400 <= response.status_code < 500:
        # The todo app's durable reaction may still be writing todo-metrics for an earlier 2xx: those events carry
        # meta.cause. A 4xx itself must append nothing, so every event after `before` must be such a reaction write.
        if served.head() != before:
            new = served.session.get(f"{served.url}/v1/events", params={"after": before, "limit": 1000}).json()
            own = [e["offset"] for e in new["events"] if "cause" not in e["meta"]]
            assert own == [], f"{response.status_code} appended events {own}"
        error = response.json().get("error")
        assert isinstance(error, dict) and set(error) == {"code", "message", "detail"}, response.text[:500]


def _cap_wait(case: Any) -> None:
    query = case.query
    if isinstance(query, dict) and "wait" in query:
        try:
            if float(query["wait"]) > MAX_WAIT:
                query["wait"] = MAX_WAIT
        except (TypeError, ValueError):
            pass  # not a number: the server must answer 400


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_never_5xx_and_4xx_change_nothing(served: Served, mode: GenerationMode) -> None:
    """Every operation of the document, with valid (positive) or invalid (negative) input."""
    api = schemathesis.openapi.from_url(f"{served.url}/schema/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=count(25, 500),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
        )
        def fuzz(case: Any) -> None:
            check_one(served, case)

        try:
            fuzz()
        except Unsatisfiable:
            # an operation without parameters or body (GET /v1/health) has no invalid form to generate
            assert mode is GenerationMode.NEGATIVE and not operation.query and not operation.body, operation.label
    served.operations = len(operations)


def test_server_survived_the_fuzzing(served: Served) -> None:
    assert served.proc.poll() is None, "the server died"
    served.head()
    assert served.session.put(f"{served.url}/v1/state/after/fuzz", json={"ok": True}).status_code == 201
    print(f"\nFIGURES fuzz-http: {served.operations} operations, statuses {dict(sorted(served.statuses.items()))}")


def test_openapi_documents_keys_as_plain_names(served: Served) -> None:
    """Regression: Litestar documented ``{key:path}`` as ``format: uri``, so generated clients and the fuzzer's valid
    requests refused ordinary keys; a key (and a stream group) is any name of 1-1024 characters."""
    paths = served.session.get(f"{served.url}/schema/openapi.json").json()["paths"]
    for path in ("/v1/state/{scope_name}/{key}", "/v1/streams/{stream}/{group}"):
        for method, operation in paths[path].items():
            for param in operation["parameters"]:
                if param["in"] == "path":
                    assert "format" not in param["schema"], (method, path, param)
                    assert param["schema"]["type"] == "string"
