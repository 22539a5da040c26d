"""Task events on memory:// + SQLite: a task's life streams in order, with Celery's field
names; failures, retries, revocations and refusals have their events; off means none."""

import asyncio
import dataclasses
import threading
import time

import pytest

from hutch import AsyncClient
from hutch.events import BATCH_MAX, HEARD_RECHECK, TaskEvents
from hutch.messages import _event_repr, decode_events, encode_event, event_repr
from hutch.ops.events import EventFilter, EventReceiver, describe, event_type
from support.events import COMMON, LIFECYCLE, Events, by_type
from support.waiting import eventually
from support.workers import running_worker


@pytest.fixture
def app(memory_app):
    return memory_app


def test_a_task_streams_sent_received_started_succeeded_with_celery_fields(app):
    broker = app.client().broker
    with Events(broker) as events, running_worker(app):
        r = app.tasks["tests.add"].apply_async((2, 3), queue="celery")
        assert r.get(timeout=10) == 5
        seen = events.wait_for(r.id, "task-succeeded")
    assert [e["type"] for e in seen] == LIFECYCLE
    kinds = by_type(seen)
    assert all(COMMON <= set(e) for e in seen)
    assert {"name", "args", "kwargs", "retries", "eta", "expires", "queue", "exchange",
            "routing_key", "root_id", "parent_id"} <= set(kinds["task-sent"])
    assert kinds["task-sent"]["args"] == "(2, 3)" and kinds["task-sent"]["queue"] == "celery"
    assert kinds["task-received"]["name"] == "tests.add"
    assert kinds["task-received"]["hostname"].startswith("hutch@")
    assert kinds["task-succeeded"]["result"] == "5"
    assert kinds["task-succeeded"]["runtime"] >= 0
    clocks = [e["clock"] for e in seen[1:]]  # one worker process: its clock only grows
    assert clocks == sorted(clocks)


def test_failure_retry_revoke_and_refusal_each_have_their_event(app):
    client = app.client()
    with Events(client.broker) as events:
        revoked = app.tasks["tests.add"].delay(1, 1)
        app.control.revoke(revoked.id)
        refused = app.tasks["tests.add"].delay(2, 2)
        wire = dataclasses.replace(app.client().message("tests.add", (3, 3)).encode(),
                                   body=b"{not json")
        client.broker.publish([("celery", wire)])
        with running_worker(app):
            failed = app.tasks["tests.fail"].delay("it broke")
            retried = app.tasks["tests.retry_once"].delay(0)
            assert retried.get(timeout=10) == 1
            failure = events.wait_for(failed.id, "task-failed")[-1]
            assert "CustomError" in failure["exception"] and "it broke" in failure["traceback"]
            retry = events.wait_for(retried.id, "task-succeeded")
            assert [e["type"] for e in retry] == [*LIFECYCLE[:3], "task-retried", *LIFECYCLE[1:]]
            assert "not yet" in by_type(retry)["task-retried"]["exception"]
            assert events.wait_for(revoked.id, "task-revoked")[-1]["expired"] is False
            rejected = events.wait_for(wire.message_id, "task-rejected")[-1]
            assert rejected["name"] == "tests.add" and "Serialization" in rejected["reason"]
            assert refused.get(timeout=10) == 4


def test_without_events_the_worker_sends_none(app):
    app.conf.worker_send_task_events = False
    app.conf.task_send_sent_event = False
    with Events(app.client().broker) as events, running_worker(app):
        r = app.tasks["tests.add"].delay(1, 2)
        assert r.get(timeout=10) == 3
    assert events.of(r.id) == []


def test_the_receiver_filters_and_iterates(app):
    broker = app.client().broker
    with EventReceiver(broker, keep=EventFilter(tasks=["tests.a*"], types=["SUCCESS"])) as rx, \
            running_worker(app):
        app.tasks["tests.mul"].delay(2, 2).get(timeout=10)
        r = app.tasks["tests.add"].delay(2, 2)
        r.get(timeout=10)
        event = rx.next_event(timeout=10)
    assert event is not None and event["uuid"] == r.id and event["type"] == "task-succeeded"
    assert "local_received" in event and "succeeded" in describe(event)
    assert rx.next_event(timeout=0.05) is None


def test_event_type_names():
    assert event_type("FAILURE") == event_type("failed") == event_type("task-failed")
    assert event_type("pending") == "task-sent"
    with pytest.raises(ValueError, match="unknown event type"):
        event_type("exploded")


def test_a_broken_broker_drops_events_counted_never_raised(app):
    def broken(body: bytes) -> bool:
        raise OSError("connection reset")

    events = TaskEvents(broken, "w@h")
    message = app.client().message("tests.add", (1, 2))
    assert events.started(message) is False and events.received(message) is False
    assert events.dropped == 2
    assert TaskEvents(lambda body: False, "w@h").started(message) is False


def test_a_stray_message_on_the_channel_is_ignored():
    assert decode_events(b"not json") == [] and decode_events(b"[1]") == []
    assert decode_events(b'{"type": "task-started", "uuid": "x"}') == [
        {"type": "task-started", "uuid": "x"}]
    assert [e["uuid"] for e in decode_events(b'[{"type": "a", "uuid": 1}, 2, {"type": "b", '
                                              b'"uuid": 3}]')] == [1, 3]


def test_a_worker_batches_its_events_and_sends_the_rest_when_closed():
    bodies: list[bytes] = []
    events = TaskEvents(lambda body: bodies.append(body) is None, "w@h", batch_seconds=60)
    for i in range(BATCH_MAX + 1):
        events.send("task-started", {"uuid": str(i)})
    assert [len(decode_events(b)) for b in bodies] == [BATCH_MAX]  # a full batch at once
    events.close()
    assert [e["uuid"] for e in decode_events(bodies[-1])] == [str(BATCH_MAX)]
    assert [e["clock"] for b in bodies for e in decode_events(b)] == sorted(
        e["clock"] for b in bodies for e in decode_events(b))


def test_a_batch_leaves_within_its_interval():
    bodies: list[bytes] = []
    events = TaskEvents(lambda body: bodies.append(body) is None, "w@h", batch_seconds=0.05)
    events.send("task-started", {"uuid": "a"})
    events.send("task-succeeded", {"uuid": "a"})
    assert eventually(lambda: bodies, 5)
    assert [e["type"] for e in decode_events(bodies[0])] == ["task-started", "task-succeeded"]
    events.close()


def test_an_emitter_builds_nothing_while_unheard_and_asks_the_broker_once_per_recheck(app):
    """The worker asks whether a reader is bound three times a task: the emitter keeps
    the broker's answer for HEARD_RECHECK, and builds no event while it is no."""
    answers: list[bool] = []
    bodies: list[bytes] = []
    reader = [False]

    def heard() -> bool:
        answers.append(reader[0])
        return reader[0]

    events = TaskEvents(lambda body: bodies.append(body) is None, "w@h", heard=heard)
    message = app.client().message("tests.add", (1, 2))
    assert events.received(message) is False and events.started(message) is False
    assert answers == [False] and bodies == []  # asked once, nothing built
    reader[0] = True
    assert events.started(message) is False  # the answer is kept until the recheck
    time.sleep(HEARD_RECHECK * 2)
    assert events.started(message) is True and answers == [False, True]
    assert [e["type"] for e in decode_events(bodies[0])] == ["task-started"]
    events.switch(False)
    assert events.started(message) is False and answers == [False, True]  # off: not asked


def test_the_async_client_sends_task_sent_ahead_of_its_messages(app):
    async def submit() -> str:
        async with AsyncClient(conf=app.conf, app=app) as client:
            handle = await client.submit("tests.add", 4, 4)
            assert await handle.get(timeout=10) == 8
            return handle.id

    with Events(app.client().broker) as events, running_worker(app):
        task_id = asyncio.run(submit())
        assert [e["type"] for e in events.wait_for(task_id, "task-succeeded")] == LIFECYCLE


def test_task_send_sent_event_is_read_at_each_send(app):
    client = app.client()
    with Events(client.broker) as events:
        app.conf.task_send_sent_event = False
        quiet = client.submit("tests.add", 1, 1)
        app.conf.task_send_sent_event = True
        loud = client.submit("tests.add", 2, 2)
        assert events.wait_for(loud.id, "task-sent")
    assert events.of(quiet.id) == []


def test_batches_keep_each_senders_order_whichever_thread_flushes():
    bodies: list[bytes] = []

    def slow_publish(body: bytes) -> bool:
        time.sleep(0.0002)  # widens the gap between taking a batch and handing it over
        bodies.append(body)
        return True

    events = TaskEvents(slow_publish, "w@h", batch_seconds=0.001)

    def sender(n: int) -> None:
        for i in range(300):
            events.send("task-started", {"uuid": f"{n}", "i": i}, now=i % 7 == 0)

    threads = [threading.Thread(target=sender, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    events.close()
    sent = [e for b in bodies for e in decode_events(b)]
    assert len(sent) == 6 * 300
    for n in range(6):
        assert [e["i"] for e in sent if e["uuid"] == f"{n}"] == list(range(300))


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text")

    def __repr__(self) -> str:
        raise RuntimeError("no text")


def test_a_batch_is_the_array_of_its_events_and_one_that_cannot_be_encoded_is_dropped_alone():
    bodies: list[bytes] = []
    events = TaskEvents(lambda body: bodies.append(body) is None, "w@h", batch_seconds=60)
    events.send("task-started", {"uuid": "a"})
    events.send("task-started", {"uuid": "b", "odd": Unprintable()})
    events.send("task-succeeded", {"uuid": "a", "result": "'5'"})
    events.close()
    assert len(bodies) == 1 and events.dropped == 1
    sent = decode_events(bodies[0])
    assert [(e["type"], e["uuid"]) for e in sent] == [("task-started", "a"),
                                                      ("task-succeeded", "a")]
    assert bodies[0] == b"[" + b",".join(encode_event(e) for e in sent) + b"]"


@pytest.mark.parametrize("value", [
    (), [], {}, (17,), (1, "two", 3.0, None, True), [1] * 32, [1] * 33, (1,) * 6, (1,) * 7,
    "x" * 254, "x" * 255, 10 ** 39, 10 ** 40, ("it's \"quoted\"\n",), ([1],), {"b": 1, "a": 2},
    float("nan"), Unprintable(), ("y" * 2000,) * 6, ("z" * 250,) * 6])
def test_event_repr_is_the_bounded_reprlib_text(value):
    try:
        text = _event_repr.repr(value)
    except RuntimeError:
        text = "<unrepresentable Unprintable: RuntimeError>"
    assert event_repr(value) == (text if len(text) <= 1024 else text[:1021] + "...")
