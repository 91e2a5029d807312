"""The HTTP API driven from its own OpenAPI schema by schemathesis (hypothesis underneath), in
process, with a bounded number of examples per operation: valid and invalid bodies, paths and
queries, with and without a token. No answer may be a 5xx, every answer must be JSON (or the
page / Prometheus text it documents), and no call may hang. The run prints its example count."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from mimrec.serve.app import create_app
from mimrec.serve.bundle import load_bundle
from mimrec.serve.scorer import Scorer

WRITE = "fuzz-token"
EXAMPLES = 50  # per operation and generation mode (valid / invalid data)
HANG_S = 10.0  # a call this long counts as a hang
SUMMARY: list[str] = []


@pytest.fixture(scope="module")
def api(trained_run, tmp_path_factory):
    run = Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("fuzz") / "run"))
    app = create_app(Scorer(load_bundle(run, "ciubm")), WRITE, allowed_hosts=("localhost", "testserver"))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _check(case, seen: Counter) -> None:
    headers = {"Authorization": f"Bearer {WRITE}"} if sum(seen.values()) % 2 == 0 else {}
    start = time.monotonic()
    response = case.call(headers=headers)
    elapsed = time.monotonic() - start
    seen[response.status_code] += 1
    label = f"{case.method} {case.formatted_path}"
    assert elapsed < HANG_S, f"{label}: {elapsed:.1f} s (a hang)"
    assert response.status_code < 500, f"{label}: {response.status_code} {response.text}"
    content_type = response.headers.get("content-type") or [""]  # schemathesis: value lists
    assert content_type[0].startswith("application/json"), label


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
                         ids=["valid", "invalid"])
def test_no_request_the_schema_allows_or_breaks_gets_a_5xx(api, mode):
    seen: Counter = Counter()
    without: list[str] = []
    operations = [result.ok() for result in api.get_all_operations()]
    for operation in operations:
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            _check(case, seen)

        try:
            run()
        except Unsatisfiable:  # nothing in this operation can be made invalid (no parameters)
            without.append(operation.label)
    total = sum(seen.values())
    line = (f"schemathesis ({mode.value} data): {total} examples over {len(operations)} "
            f"operations; answers by status {dict(sorted(seen.items()))}; 5xx: "
            f"{sum(n for status, n in seen.items() if status >= 500)}"
            + (f"; no {mode.value} form: {', '.join(without)}" if without else ""))
    SUMMARY.append(line)  # printed at the end of the run (tests/serve/conftest.py)
    assert total >= len(operations) * 5 and not any(status >= 500 for status in seen)
