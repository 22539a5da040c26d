"""Each task-message field is declared once (hutch.messages.TaskMessage, its FieldSpec
metadata); these tests check that everything said to follow from a declaration does:
the wire, the call options, ``@app.task``'s defaults, the request, the row and the
protocol reference."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from test_messages import full_message

from hutch import Hutch
from hutch.call_options import CALL_OPTIONS, build_message
from hutch.config import Settings
from hutch.messages import (
    HEADERS,
    OPTIONS,
    SPECS,
    TASK_DEFAULTS,
    Request,
    TaskMessage,
    header_row_values,
    row_values,
)
from hutch.results.models import tasks as tasks_table
from hutch.results.records import StateChange, TaskRecord
from hutch.tasks import OPTION_NAMES, TaskOptions

PROTOCOL = (Path(__file__).parents[2] / "docs" / "protocol.md").read_text()


def test_the_round_trip_sample_sets_every_field_away_from_its_default():
    """A field added to TaskMessage must be added to the sample, so the round trip
    test covers it."""
    sample, plain = full_message(origin="host:1", sent_at=None), TaskMessage(task="t", id="i")
    unset = {f.name for f in dataclasses.fields(TaskMessage)
             if getattr(sample, f.name) == getattr(plain, f.name)}
    assert unset <= {"task", "id", "link_error", "chord", "sent_at"}, unset


def test_every_field_survives_encode_and_decode():
    message = full_message(origin="host:1", link_error=({"task": "tasks.eb"},),
                           chord={"group_id": "g1", "counts": True})
    wire = message.encode()
    assert all(type(v) in (str, int, float, bool) for v in wire.headers.values()), wire.headers
    decoded = TaskMessage.decode(wire)
    for f in dataclasses.fields(TaskMessage):
        if f.name != "sent_at":
            assert getattr(decoded, f.name) == getattr(message, f.name), f.name
    assert decoded.sent_at is not None


def test_every_task_default_is_an_option_of_app_task_and_of_each_call():
    task_fields = {f.name for f in dataclasses.fields(TaskOptions)}
    assert set(TASK_DEFAULTS) <= task_fields & OPTION_NAMES
    assert set(TASK_DEFAULTS) <= CALL_OPTIONS == set(OPTIONS)
    for name in TASK_DEFAULTS:
        setting = SPECS[name].setting
        assert setting is None or hasattr(Settings(), setting), (name, setting)


@pytest.mark.parametrize("name, call, task, app", [
    ("queue", "q.call", "q.task", "q.app"),
    ("serializer", "msgpack", "yaml", "json"),
    ("time_limit", 9.0, 8.0, None),
    ("ignore_result", False, True, True),
])
def test_a_task_default_gives_way_to_the_call_and_beats_the_setting(name, call, task, app):
    conf = Settings(broker_url="memory://", **(
        {SPECS[name].setting: app} if SPECS[name].setting else {}))
    defaults = TaskOptions(name="t", **{name: task})
    built = [getattr(build_message("t", (), {}, options, conf, given), name)
             for options, given in (({name: call}, defaults), ({}, defaults), ({}, None))]
    assert built == [call, task, app]


def test_the_request_shows_every_field_of_the_message_it_runs():
    message = full_message()
    request = Request.of(message, "w1@host")
    assert request.hostname == "w1@host" and not request.is_eager
    for f in dataclasses.fields(TaskMessage):
        if f.name != "headers":
            assert getattr(request, f.name) == getattr(message, f.name), f.name
    # the custom headers on the wire join the headers= option's, as Celery shows them
    assert request.headers == {**message.headers, **message.custom_headers}


def test_the_row_values_are_columns_of_hutch_tasks_and_state_change_fields():
    columns = set(tasks_table.c.keys())
    changes = {f.name for f in dataclasses.fields(StateChange)}
    values = row_values(full_message())
    assert set(values) <= columns & changes
    assert values["task_id"] == "abc" and values["name"] == "tasks.add"
    assert values["args"] == [1, {"__hutch__": "tuple", "v": [2, 3]}]


def test_a_received_row_takes_the_valid_headers_and_leaves_out_the_bad_ones():
    headers = {**full_message().encode().headers, "retries": "three"}
    values = header_row_values(headers)
    assert values["name"] == "tasks.add" and values["group_id"] == "g"
    assert "retries" not in values and "task_id" not in values


def test_every_header_and_body_field_is_in_the_protocol_reference():
    headers = PROTOCOL.split("## Headers", 1)[1].split("\n## ", 1)[0]
    body = PROTOCOL.split("## Body", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`(\w+)`", headers))
    assert set(HEADERS) <= documented, set(HEADERS) - documented
    body_fields = {n for n, s in SPECS.items() if s.place == "body"}
    assert all(f'"{name}"' in body for name in body_fields)
    custom_fields = [n for n, s in SPECS.items() if s.place == "custom"]
    assert custom_fields and all(f"TaskMessage.{name}" in headers for name in custom_fields)


def test_an_app_task_accepts_each_task_default():
    app = Hutch("fields", broker_url="memory://", result_backend="sqlite://")

    @app.task(queue="slow", time_limit=5, soft_time_limit=4, priority=3,
              serializer="msgpack", compression="zlib", ignore_result=True)
    def job() -> None:
        return None

    options = app.tasks.options_for(job.name)
    assert [getattr(options, n) for n in TASK_DEFAULTS] == \
        ["slow", True, 5.0, 4.0, 3, "msgpack", "zlib"]


def test_a_write_and_a_read_of_hutch_tasks_name_every_column():
    """Adding a column is its Column, a migration, and a field in StateChange (the
    write) and TaskRecord (the read): the store's statements follow from those."""
    columns = set(tasks_table.c.keys()) - {"updated_at"}
    assert {f.name for f in dataclasses.fields(StateChange)} == columns
    assert {f.name for f in dataclasses.fields(TaskRecord)} == columns
