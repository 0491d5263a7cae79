"""A bounded fuzz run of every route in Haven's own OpenAPI schema: no request answers 500.

schemathesis reads `/api/openapi.json` from the real `haven serve` (the `hub_server` fixture) and
hypothesis draws requests for each operation, derandomized (the same examples on every run) and
capped at a few examples per route so the whole run stays well under a minute. Half the draws
aim at a real repository the caller owns (so they get past the 404s into the route's own
checks), half keep the random names; all carry a write token. A dropped connection fails the
run as a 500 does (before issue 12's fixes it found one: a control character in a resolve path).
"""

from __future__ import annotations

import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures.server import unique_name

schemathesis = pytest.importorskip("schemathesis")

EXAMPLES = 20  # per route
BUDGET_S = 60
SLOW = {"git-upload-pack", "git-receive-pack"}  # each request starts `git http-backend`


def _fuzz(operation, url: str, headers: dict, ns: str, name: str, failures: list) -> None:
    examples = 4 if any(s in operation.path for s in SLOW) else EXAMPLES

    @settings(
        max_examples=examples, derandomize=True, deadline=None, database=None, print_blob=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(), aim=st.booleans())
    def run(case, aim):
        params = case.path_parameters or {}
        if aim:
            if "ns" in params:
                params["ns"], params["name"] = ns, name
            if "plural" in params:
                params["plural"] = "models"
        response = case.call(base_url=url, headers=headers, timeout=30)
        if response.status_code >= 500 and response.status_code != 501:  # 501: a Hub feature not served
            failures.append(
                f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]!r} "
                f"(query={case.query!r}, body={str(case.body)[:200]!r})"
            )

    run()


def test_no_route_answers_500(hub_server):
    owner = unique_name("fuzz")
    token = hub_server.create_user(owner)
    created = httpx.post(
        f"{hub_server.url}/api/repos/create", json={"name": "target"}, headers={"authorization": f"Bearer {token}"}
    )
    assert created.status_code == 200, created.text
    schema = schemathesis.openapi.from_url(f"{hub_server.url}/api/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 30  # every area of the API is in the schema
    failures: list[str] = []
    start = time.monotonic()
    for operation in operations:
        _fuzz(operation, hub_server.url, {"authorization": f"Bearer {token}"}, owner, "target", failures)
    elapsed = time.monotonic() - start
    assert not failures, "\n".join(failures)
    assert elapsed < BUDGET_S, f"the fuzz run took {elapsed:.0f}s; lower EXAMPLES"
