"""The action endpoints fuzzed by schemathesis over the OpenAPI description, in process
on memory:// and SQLite, with the CSRF cookie and header (so the bodies reach the
actions; tests/unit/test_web_api_fuzz.py sends them without, and they stop at the CSRF
check): whatever is generated, valid or not, answers no 5xx, and a refusal is the JSON
error naming its field."""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402 - after the skip
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation import GenerationMode  # noqa: E402

from hutch.results.records import StateChange  # noqa: E402
from hutch.web.api.actions import OPERATIONS as ACTION_OPERATIONS  # noqa: E402
from hutch.web.app import create_app  # noqa: E402

TOKEN = "t" * 43
"""A CSRF token: the cookie and the header carry the same value."""


def errors_are_json(ctx, response, case) -> bool:
    if response.status_code >= 400:
        assert set(response.json()) == {"error", "field"}, response.text
        assert "Traceback" not in response.text
    return True


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_action_input_makes_a_server_error(memory_app, mode):
    memory_app.client().store.write([
        StateChange(task_id="t1", state="FAILURE", name="tests.add", args=[1, 2], kwargs={})])
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", create_app(memory_app))
    operations = [result.ok() for result in schema.get_all_operations()]
    mine = {op.path for op in ACTION_OPERATIONS if op.method == "post"}
    posts = [op for op in operations if op.method.upper() == "POST" and op.path in mine]
    assert len(posts) == 5
    headers = {"Cookie": f"hutch_csrf={TOKEN}", "X-CSRF-Token": TOKEN}
    for operation in posts:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=8, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        def call(case):
            response = case.call(headers=headers)
            assert response.status_code != 403, response.text  # it reached the action
            case.validate_response(response, checks=[not_a_server_error, errors_are_json])

        call()
