"""hutch web's JSON API fuzzed by schemathesis over its own OpenAPI description, in
process (ASGI) on memory:// and SQLite with a few rows: whatever schemathesis
generates, valid or not, answers no 5xx and, when refused, a JSON error naming
the field (issue #14, "Proof"). The handwritten table of bad inputs:
tests/unit/test_web_api.py. Skipped where schemathesis is not installed."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402 - after the skip
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

from hutch.results.records import StateChange  # noqa: E402
from hutch.web.api import OPERATIONS  # noqa: E402
from hutch.web.app import create_app  # noqa: E402


def errors_are_json(ctx, response, case) -> bool:
    """A refusal is ``{"error": ..., "field": ...}`` in JSON, never a traceback."""
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error", "field"}, body
        assert "Traceback" not in response.text
    return True


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_makes_a_server_error(memory_app, mode):
    memory_app.client().store.write([
        StateChange(task_id="t1", state="SUCCESS", name="tests.add", args=[1, 2], result=3),
        StateChange(task_id="t2", state="FAILURE", name="tests.fail",
                    exception_type="ValueError", exception_message="boom")])
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", create_app(memory_app))
    schema.config.generation.update(allow_x00=True)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    skipped: list[str] = []
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case):
            case.call_and_validate(checks=[not_a_server_error, errors_are_json])

        try:
            call()
        except Unsatisfiable:  # no parameter to make wrong (e.g. GET /api/v1/queues)
            assert mode == GenerationMode.NEGATIVE, operation.label
            skipped.append(operation.label)
    # only those with nothing but a path (or no input) to make wrong may be left out
    with_input = {f"{op.method.upper()} {op.path}" for op in OPERATIONS if op.params or op.body}
    assert not with_input & set(skipped), skipped
