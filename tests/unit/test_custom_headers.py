"""Custom headers on memory:// + SQLite: a header a before_task_publish receiver adds
reaches the worker as ``self.request.<name>`` and in ``self.request.headers`` (what
OpenTelemetry's Celery instrumentation needs); hutch's own headers cannot be changed by
a receiver; hostile custom headers are left out, never fatal; and the worker's own
publishes (a chain's next step, a retry, callbacks, chord bodies) send the publish
signals, in the thread that ran the task, so a trace continues across a workflow."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from apps import header_tasks
from apps.tasks import CustomError
from hutch import chain, chord, group, signals
from hutch.envelope import CUSTOM_HEADERS_MAX, CUSTOM_VALUE_CHARS
from hutch.errors import ConfigurationError
from hutch.messages import Request, TaskMessage
from hutch.publishing import before
from support.waiting import eventually
from support.workers import running_worker


@pytest.fixture
def app(memory_app):
    header_tasks.register(memory_app)
    header_tasks.connect()
    yield memory_app
    header_tasks.disconnect()
    header_tasks.PRERUN.clear()


@pytest.fixture
def published():
    """``(sender, headers)`` of every before_task_publish and after_task_publish."""
    seen: dict[str, list[tuple[str, dict]]] = {"before": [], "after": []}

    def on_before(sender, headers, **_):
        seen["before"].append((sender, dict(headers)))

    def on_after(sender, headers, **_):
        seen["after"].append((sender, dict(headers)))

    signals.before_task_publish.connect(on_before)
    signals.after_task_publish.connect(on_after)
    yield seen
    signals.before_task_publish.disconnect(on_before)
    signals.after_task_publish.disconnect(on_after)


def test_a_receivers_header_is_an_attribute_of_the_request_and_in_its_headers(app):
    trace = app.tasks["tests.headers.trace"]
    with running_worker(app):
        r = trace.apply_async(headers={"tenant": "acme"})
        seen = r.get(timeout=10)
    expected = f"root>{r.id}"
    assert seen["attribute"] == seen["headers"] == seen["prerun"] == expected
    assert seen["tenant"] == "acme"  # the headers= option's show as attributes too


@pytest.mark.parametrize("pool", ["threads", "asyncio", "solo"])
def test_a_chain_step_the_worker_publishes_sends_the_publish_signals_and_continues_the_trace(
        app, published, pool):
    trace = app.tasks["tests.headers.trace"]
    with running_worker(app, pool=pool):
        r = chain(trace.s(), trace.s()).apply_async()
        second = r.get(timeout=10)
        first = r.parent.get(timeout=10)
        assert eventually(lambda: len(published["after"]) == 2, timeout=10)
    assert first["attribute"] == first["prerun"] == f"root>{first['id']}"
    assert second["attribute"] == second["prerun"] == second["headers"] == \
        f"root>{first['id']}>{second['id']}"
    assert [(s, h["id"]) for s, h in published["before"]] == \
        [("tests.headers.trace", first["id"]), ("tests.headers.trace", second["id"])]
    assert published["after"][1][1]["traceparent"] == second["attribute"]
    assert published["after"][1][1]["parent_id"] == first["id"]


def test_a_retry_sends_the_publish_signals_and_carries_the_custom_headers_on(app, published):
    with running_worker(app):
        r = app.tasks["tests.headers.retry_once"].delay()
        assert r.get(timeout=10) == [1, f"root>{r.id}>{r.id}"]
    assert [h["retries"] for _, h in published["before"]] == [0, 1]


def test_a_replacement_sends_the_publish_signals_and_continues_the_trace(app, published):
    with running_worker(app):
        r = app.tasks["tests.headers.handover"].delay()
        seen = r.get(timeout=10)
        assert eventually(lambda: len(published["after"]) == 2, timeout=10)
    replacement = published["after"][1][1]
    assert replacement["task"] == "tests.headers.trace"
    assert seen["attribute"] == seen["prerun"] == f"root>{r.id}>{replacement['id']}"


def test_callbacks_errbacks_and_a_chord_body_send_the_publish_signals(app, published):
    trace, fail = app.tasks["tests.headers.trace"], app.tasks["tests.fail"]
    with running_worker(app):
        linked = trace.apply_async(link=trace.si(), link_error=trace.si())
        failing = fail.apply_async(link_error=trace.si())
        body = chord(group(trace.si(), trace.si()), trace.s()).apply_async()
        seen = body.get(timeout=10)
        linked.get(timeout=10)
        with pytest.raises(CustomError):
            failing.get(timeout=10)
        # sent here: 2 tasks and the chord's 2 header tasks; by the worker: the link,
        # the errback and the chord body
        assert eventually(lambda: len(published["after"]) == 7, timeout=10)
    before = {h["id"]: h for _, h in published["before"]}
    after = {h["id"]: h for _, h in published["after"]}
    assert before.keys() == after.keys()
    by_parent = {h.get("parent_id"): h for h in after.values()}
    assert by_parent[linked.id]["traceparent"] == f"root>{linked.id}>{by_parent[linked.id]['id']}"
    assert by_parent[failing.id]["traceparent"] == \
        f"root>{failing.id}>{by_parent[failing.id]['id']}"
    # the chord body is published from the result writer's thread: no task's trace there
    assert after[body.id]["traceparent"] == seen["attribute"] == f"root>{body.id}"


def test_a_receiver_cannot_change_hutchs_own_headers_nor_send_a_header_it_cannot_show(
        app, published, caplog):
    def meddle(headers, **_):
        headers["retries"] = 9
        headers["eta"] = "2099-01-01T00:00:00+00:00"
        del headers["queue"]
        headers["args"] = "shadowing"
        headers["nested"] = {"a": 1}
        headers["fine"] = 1.5

    signals.before_task_publish.connect(meddle)
    try:
        with caplog.at_level(logging.ERROR, logger="hutch.signals"):
            r = app.tasks["tests.headers.trace"].delay()
    finally:
        signals.before_task_publish.disconnect(meddle)
    [line] = [rec.getMessage() for rec in caplog.records if "refused" in rec.getMessage()]
    for name in ("retries", "eta", "queue", "args", "nested"):
        assert name in line, line
    [(_, sent)] = published["after"]
    assert sent["retries"] == 0 and sent["queue"] == "celery" and sent["fine"] == 1.5
    assert not {"eta", "args", "nested"} & set(sent)
    with running_worker(app):
        seen = r.get(timeout=10)
    assert seen["retries"] == 0 and seen["attribute"] == f"root>{r.id}"


def test_hostile_custom_headers_are_left_out_with_a_warning_never_refused(caplog):
    wire = TaskMessage(task="t", id="i", custom_headers={"traceparent": "00-ok"}).encode()
    many = {f"h{i}": i for i in range(CUSTOM_HEADERS_MAX + 5)}
    hostile = dataclasses.replace(wire, headers={
        **wire.headers, "nested": {"a": {"b": 1}}, "listed": [1, 2], "raw": b"\x00\xff",
        "huge": "x" * (CUSTOM_VALUE_CHARS + 1), "nan": float("nan"), "kwargs": "shadow",
        "x-death": [{"count": 1}], 7: "not a name", **many})
    with caplog.at_level(logging.WARNING, logger="hutch.messages"):
        decoded = TaskMessage.decode(hostile)
    custom = decoded.custom_headers
    assert custom["traceparent"] == "00-ok" and len(custom) == CUSTOM_HEADERS_MAX
    assert not {"nested", "listed", "raw", "huge", "nan", "kwargs", "x-death", 7} & set(custom)
    [record] = caplog.records
    for name in ("nested", "listed", "raw", "huge", "nan", "kwargs", "h68"):
        assert name in record.getMessage(), name
    request = Request.of(decoded, "w@h")
    assert request.kwargs == {} and request.traceparent == "00-ok"
    with pytest.raises(AttributeError):
        request.nested  # noqa: B018


def test_a_hostile_header_on_a_delivered_message_does_not_stop_the_task(app):
    message = app.client().message("tests.headers.trace")
    wire = message.encode()
    wire = dataclasses.replace(wire, headers={**wire.headers, "nested": {"a": [1]},
                                              "traceparent": "00-given"})
    app.client().broker.publish([("celery", wire)])
    with running_worker(app):
        seen = app.AsyncResult(message.id).get(timeout=10)
    assert seen["attribute"] == "00-given"


def test_with_no_receiver_the_publish_is_left_as_it_is():
    wire = TaskMessage(task="t", id="i").encode()
    [(queue, out)] = before([("celery", wire)], "p", None)
    assert out is wire and queue == "celery"


def test_custom_headers_set_by_code_must_be_plain_and_never_shadow_hutchs_own():
    wire = TaskMessage(task="t", id="i", retries=1, custom_headers={
        "retries": 7, "args": "x", "traceparent": "00-ok"}).encode()
    assert wire.headers["retries"] == 1 and wire.headers["traceparent"] == "00-ok"
    assert "args" not in wire.headers
    with pytest.raises(ConfigurationError, match=r"custom_headers: \['bad'\]"):
        TaskMessage(task="t", id="i", custom_headers={"bad": {"a": 1}}).encode()
