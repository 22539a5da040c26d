"""Control commands that change a running worker, on memory://: Celery's replies and
shapes, the merging of many processes' answers, error replies to bad arguments, and
each command's effect on the worker (its consumer, rate and time limits, events)."""

from __future__ import annotations

import uuid

import pytest

from apps.tasks import make_app
from hutch.brokers.base import CONTROL
from hutch.brokers.memory import MemoryBroker
from hutch.errors import TimeLimitExceeded
from hutch.messages import ControlReply, ControlRequest
from hutch.ops.control import merge_agreed
from hutch.results.records import PENDING, RECEIVED, SUCCESS
from support.events import Events
from support.waiting import eventually
from support.workers import running_worker


@pytest.fixture
def app(tmp_path):
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}")
    yield app
    app.close()


def answering(broker: MemoryBroker, hostname: str, child: int | None, of: int, answer):
    """A subscriber answering as one process of ``hostname`` would: ``answer(request)``
    is ``("ok", value)`` or ``("error", text)``."""
    def on_request(body: bytes) -> None:
        request = ControlRequest.decode(body)
        if request.is_for(hostname):
            kind, value = answer(request)
            broker.reply(request.reply_to, ControlReply(
                request.ticket, hostname, child, of, 1000 + (child or 0),
                **{kind: value}).encode())
    return broker.subscribe(CONTROL, on_request)


def test_broadcast_merges_the_children_of_each_worker_in_celerys_list(app):
    broker = app.client().broker
    seen: list[ControlRequest] = []

    def ok(request):
        seen.append(request)
        return "ok", {"ok": "new rate limit set successfully"}

    subs = [answering(broker, "a@h", i, 2, ok) for i in range(2)]
    subs.append(answering(broker, "b@h", 0, 2, ok))
    subs.append(answering(broker, "b@h", 1, 2, lambda r: ("error", "ValueError: no")))
    try:
        assert app.control.rate_limit("tests.add", "5/s", reply=True, timeout=0.3) == [
            {"a@h": {"ok": "new rate limit set successfully"}},
            {"b@h": {"error": "ValueError: no"}}]
        assert seen[0].command == "rate_limit"
        assert seen[0].arguments == {"task_name": "tests.add", "rate_limit": "5/s"}
        assert app.control.rate_limit("tests.add", "5/s") is None  # reply=False: no wait
        assert app.control.add_consumer("q", destination=["a@h"], reply=True,
                                        timeout=60) == [
            {"a@h": {"ok": "new rate limit set successfully"}}]  # ends once a@h answered
        assert app.control.broadcast("ping", reply=True, destination=["x@h"],
                                     timeout=0.1) == []
    finally:
        for sub in subs:
            sub.close()


def test_node_commands_carry_celerys_argument_names(app):
    broker = app.client().broker
    subs = [answering(broker, "a@h", None, 1,
                      lambda r: ("ok", {"command": r.command, "arguments": r.arguments}))]
    control = app.control
    ask = {"destination": ["a@h"], "reply": True, "timeout": 10}
    try:
        for call, command, arguments in [
                (lambda: control.shutdown(**ask), "shutdown", {}),
                (lambda: control.pool_grow(2, **ask), "pool_grow", {"n": 2}),
                (lambda: control.pool_shrink(**ask), "pool_shrink", {"n": 1}),
                (lambda: control.autoscale(8, 2, **ask), "autoscale",
                 {"max": 8, "min": 2}),
                (lambda: control.heartbeat(**ask), "heartbeat", {}),
                (lambda: control.time_limit("t", soft=1, **ask), "time_limit",
                 {"task_name": "t", "soft": 1, "hard": None}),
                (lambda: control.cancel_consumer("q", **ask), "cancel_consumer",
                 {"queue": "q"}),
                (lambda: control.enable_events(**ask), "enable_events", {}),
                (lambda: control.disable_events(**ask), "disable_events", {})]:
            assert call() == [{"a@h": {"command": command, "arguments": arguments}}]
    finally:
        for sub in subs:
            sub.close()


def test_merge_agreed_joins_differing_texts():
    assert merge_agreed([{"ok": "a"}, {"ok": "a"}]) == {"ok": "a"}
    assert merge_agreed([{"ok": "b"}, {"ok": "a"}]) == {"ok": "a; b"}
    assert merge_agreed([1, 2]) == [1, 2]


def test_rate_and_time_limits_change_in_the_running_worker(app):
    with running_worker(app, concurrency=2) as worker:
        host = worker.nodename
        ask = {"destination": [host], "reply": True, "timeout": 10}
        control = app.control
        assert worker._executor is not None
        limits = worker._executor.rate_limits
        assert control.rate_limit("tests.add", "1/m", **ask) == [
            {host: {"ok": "new rate limit set successfully"}}]
        bucket = limits.bucket(app.tasks["tests.add"])
        assert bucket is not None and bucket.rate == pytest.approx(1 / 60)
        sent = [app.tasks["tests.add"].delay(i, i) for i in range(2)]
        assert eventually(lambda: any(r.state == SUCCESS for r in sent))
        assert app.tasks["tests.mul"].delay(2, 2).get(timeout=10) == 4  # unlimited, after
        assert sorted(r.state for r in sent) == [RECEIVED, SUCCESS]  # one waits a minute
        assert control.rate_limit("tests.add", None, **ask) == [
            {host: {"ok": "rate limit disabled successfully"}}]
        assert limits.bucket(app.tasks["tests.add"]) is None

        assert control.rate_limit("tests.nope", "1/s", **ask) == [
            {host: {"error": "ValueError: rate_limit: unknown task 'tests.nope'"}}]
        bad = control.rate_limit("tests.add", "ten a minute", **ask)
        assert bad is not None and "is not a rate" in bad[0][host]["error"]
        assert control.broadcast("rate_limit", {"rate_limit": "1/s"}, **ask) == [
            {host: {"error": "ValueError: rate_limit: 'task_name' must be a task name"}}]

        assert control.time_limit("tests.add", soft=5, hard=10, **ask) == [
            {host: {"ok": "time limits set successfully"}}]
        refused = control.time_limit("tests.add", soft=10, hard=5, **ask)
        assert refused is not None and "must be shorter" in refused[0][host]["error"]
        assert control.time_limit("tests.add", soft=0, hard=0, **ask) == [
            {host: {"ok": "time limits set successfully"}}]  # 0: none, as in Celery
        refused = control.time_limit("tests.add", soft=-1, **ask)
        assert refused is not None and "seconds > 0" in refused[0][host]["error"]
        assert app.tasks["tests.mul"].delay(2, 3).get(timeout=10) == 6  # goes on


def test_a_new_hard_time_limit_stops_an_asyncio_task(app):
    with running_worker(app, pool="asyncio", concurrency=1) as worker:
        assert app.control.time_limit("tests.asleep", hard=0.3, destination=[worker.nodename],
                                      reply=True, timeout=10) == [
            {worker.nodename: {"ok": "time limits set successfully"}}]
        with pytest.raises(TimeLimitExceeded):
            app.tasks["tests.asleep"].delay(30).get(timeout=10)


def test_consumers_are_added_and_cancelled(app):
    broker = app.client().broker
    with running_worker(app, concurrency=2) as worker:
        host, control = worker.nodename, app.control
        ask = {"destination": [host], "reply": True, "timeout": 10}
        extra = app.tasks["tests.add"].apply_async((1, 2), queue="extra")
        assert broker.queue_stats("extra").consumers == 0
        assert control.add_consumer("extra", **ask) == [{host: {"ok": "add consumer extra"}}]
        assert extra.get(timeout=10) == 3
        assert control.add_consumer("extra", **ask) == [
            {host: {"ok": "already consuming from 'extra'"}}]
        assert [q["name"] for q in control.inspect([host], 10).active_queues()[host]] == [
            "celery", "extra"]

        assert control.cancel_consumer("extra", **ask) == [
            {host: {"ok": "no longer consuming from extra"}}]
        assert control.cancel_consumer("extra", **ask) == [
            {host: {"ok": "not consuming from 'extra'"}}]
        waiting = app.tasks["tests.add"].apply_async((2, 2), queue="extra")
        assert broker.queue_stats("extra").ready == 1
        assert broker.queue_stats("extra").consumers == 0
        assert app.tasks["tests.add"].delay(3, 3).get(timeout=10) == 6  # celery goes on
        assert broker.queue_stats("extra").ready == 1 and waiting.state == PENDING
        assert [q["name"] for q in control.inspect([host], 10).active_queues()[host]] == ["celery"]
        control.add_consumer("extra", **ask)
        assert waiting.get(timeout=10) == 4
        assert control.broadcast("add_consumer", {"queue": 5}, **ask) == [
            {host: {"error": "ValueError: add_consumer: 'queue' must be a queue (route) name"}}]


def test_task_events_are_switched_off_and_on(app):
    broker = app.client().broker
    with Events(broker) as events, running_worker(app, concurrency=1) as worker:
        host, control = worker.nodename, app.control
        ask = {"destination": [host], "reply": True, "timeout": 10}
        assert control.disable_events(**ask) == [{host: {"ok": "task events disabled"}}]
        assert control.disable_events(**ask) == [
            {host: {"ok": "task events already disabled"}}]
        quiet = app.tasks["tests.add"].delay(1, 1)
        assert quiet.get(timeout=10) == 2
        assert control.enable_events(**ask) == [{host: {"ok": "task events enabled"}}]
        loud = app.tasks["tests.add"].delay(2, 2)
        assert loud.get(timeout=10) == 4
        assert events.wait_for(loud.id, "task-succeeded")[-1]["type"] == "task-succeeded"
        # the client's own task-sent still comes; the worker sent nothing for quiet
        assert events.types_of(quiet.id) == ["task-sent"]
        assert app.tasks["tests.add"].AsyncResult(loud.id).state == SUCCESS
