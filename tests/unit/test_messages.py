import dataclasses
import datetime as dt

import pytest

from hutch.errors import ContentDisallowed, MessageError
from hutch.messages import TaskMessage, Wire, replayable


def full_message(**changes):
    base = TaskMessage(
        task="tasks.add", id="abc", args=(1, (2, 3)), kwargs={"k": dt.date(2026, 1, 2)},
        queue="priority.high", eta=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc),
        expires=dt.datetime(2030, 1, 2, tzinfo=dt.timezone.utc), retries=2, parent_id="p",
        root_id="r", group_id="g", link=({"task": "tasks.cb", "args": [], "kwargs": {},
                                          "options": {}, "immutable": False},),
        link_error=(), headers={"tenant": "acme"}, ignore_result=True, time_limit=5.0,
        soft_time_limit=4.0, priority=3, serializer="msgpack", compression="gzip",
        schedule_name="nightly", stamps={"tenant": "acme", "batch": [1, 2]},
        custom_headers={"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
        notify="client.0123456789abcdef")
    return base.replace(**changes)


def test_round_trip_keeps_every_field():
    message = full_message()
    decoded = TaskMessage.decode(message.encode())
    for field in ("task", "id", "args", "kwargs", "queue", "eta", "expires", "retries",
                  "parent_id", "root_id", "group_id", "link", "headers", "ignore_result",
                  "time_limit", "soft_time_limit", "priority", "serializer", "compression",
                  "schedule_name", "notify"):
        assert getattr(decoded, field) == getattr(message, field), field


def test_a_decoded_message_is_the_message_built_from_its_fields():
    sparse = TaskMessage(task="tasks.add", id="abc", args=(1,), queue="q")
    for message in (full_message(), sparse):
        decoded = TaskMessage.decode(message.encode())
        assert decoded == dataclasses.replace(
            message, sent_at=decoded.sent_at, origin=decoded.origin)
        assert decoded.__dict__.keys() == message.__dict__.keys()
    first, second = (TaskMessage.decode(sparse.encode()) for _ in range(2))
    assert first.kwargs == {} and first.kwargs is not second.kwargs  # defaults never shared
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.retries = 1  # type: ignore[misc]


def test_headers_are_plain_values_readable_without_the_body():
    wire = full_message().encode()
    assert wire.headers["task"] == "tasks.add"
    assert wire.headers["id"] == "abc"
    assert wire.headers["eta"] == "2030-01-01T00:00:00+00:00"
    assert wire.content_encoding == "gzip"
    assert wire.content_type == "application/x-msgpack"


def test_missing_task_header_is_a_message_error():
    wire = Wire(body=b"{}", content_type="application/json", content_encoding="utf-8",
                headers={"hutch": 1, "queue": "celery"}, message_id="x")
    with pytest.raises(MessageError, match="'task' missing"):
        TaskMessage.decode(wire)


def test_body_of_the_wrong_shape_is_a_message_error():
    wire = Wire(body=b"[1,2]", content_type="application/json", content_encoding="utf-8",
                headers={"hutch": 1, "task": "t", "id": "i", "queue": "celery"}, message_id="i")
    with pytest.raises(MessageError, match="body: expected a mapping"):
        TaskMessage.decode(wire)


def test_refused_serializer():
    wire = full_message(serializer="pickle", compression=None).encode()
    with pytest.raises(ContentDisallowed):
        TaskMessage.decode(wire, accept=("json",))


def test_replayable_copy_drops_broker_history_and_worker_bookkeeping():
    wire = full_message().encode()
    dead = dataclasses.replace(wire, headers={**wire.headers, "x-death": [{"count": 1}],
                                              "rate_slot": "2030-01-01T00:00:00+00:00"})
    clean = replayable(dead)
    assert "x-death" not in clean.headers and "rate_slot" not in clean.headers
    assert clean.headers["retries"] == 0 and clean.headers["task"] == "tasks.add"
    assert clean.body == wire.body
