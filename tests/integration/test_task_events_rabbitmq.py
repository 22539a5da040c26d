"""Task events on RabbitMQ with a prefork worker: a task's life streams in order with
Celery's field names; failures, retries, revocations and refusals have theirs;
``--without-events`` sends none; ``hutch events --json`` prints them live."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from hutch import AsyncClient, Client
from hutch import events as hutch_events
from hutch.brokers import base
from hutch.brokers.base import TASK_EVENTS
from support.events import COMMON, LIFECYCLE, Events, by_type
from support.processes import TESTS_DIR
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def test_lifecycle_failure_retry_revoke_and_refusal_stream_from_a_prefork_worker(
        app, env, workers):
    client = app.client()
    with Events(client.broker) as events:
        revoked = app.tasks["tests.add"].delay(1, 1)
        app.control.revoke(revoked.id)
        wire = dataclasses.replace(client.message("tests.add", (3, 3)).encode(),
                                   body=b"{not json")
        client.broker.publish([("celery", wire)])
        workers(env, pool="prefork", concurrency=2).wait_ready(count=2)
        r = app.tasks["tests.add"].delay(2, 3)
        failed = app.tasks["tests.fail"].delay("it broke")
        retried = app.tasks["tests.retry_once"].delay(0)
        assert r.get(timeout=30) == 5 and retried.get(timeout=30) == 1

        seen = events.wait_for(r.id, "task-succeeded")
        assert [e["type"] for e in seen] == LIFECYCLE
        assert all(COMMON <= set(e) for e in seen)
        kinds = by_type(seen)
        assert kinds["task-sent"]["exchange"] == f"{app.conf.topology_prefix}.celery"
        assert kinds["task-sent"]["routing_key"] == "celery"
        assert kinds["task-received"]["hostname"] == kinds["task-succeeded"]["hostname"]
        assert kinds["task-started"]["pid"] != kinds["task-sent"]["pid"]  # a child ran it
        assert kinds["task-succeeded"]["result"] == "5"

        failure = events.wait_for(failed.id, "task-failed")[-1]
        assert "CustomError" in failure["exception"] and "Traceback" in failure["traceback"]
        retry = events.wait_for(retried.id, "task-succeeded")  # its two attempts, in order
        assert [e["type"] for e in retry] == [*LIFECYCLE[:3], "task-retried", *LIFECYCLE[1:]]
        assert events.wait_for(revoked.id, "task-revoked")[-1]["terminated"] is False
        rejected = events.wait_for(wire.message_id, "task-rejected")[-1]
        assert rejected["requeue"] is False and "Serialization" in rejected["reason"]


def test_without_events_the_worker_sends_none(app, env, workers):
    with Events(app.client().broker) as events:
        workers(env, pool="threads", extra_args=["--without-events"]).wait_ready()
        r = app.tasks["tests.add"].delay(1, 2)
        assert r.get(timeout=30) == 3
        done = app.tasks["tests.add"].delay(5, 5)  # a later task, so a late event had time
        assert done.get(timeout=30) == 10
    assert events.types_of(r.id) == ["task-sent"]  # the client's own, nothing from the worker


def test_the_async_client_sends_task_sent_ahead_of_its_message(app, env, workers):
    async def submit() -> str:
        async with AsyncClient(conf=app.conf, app=app) as client:
            handles = await asyncio.gather(*(client.submit("tests.add", i, i) for i in range(3)))
            assert [await h.get(timeout=30) for h in handles] == [0, 2, 4]
            return handles[-1].id

    with Events(app.client().broker) as events:
        workers(env, pool="threads").wait_ready()
        task_id = asyncio.run(submit())
        assert [e["type"] for e in events.wait_for(task_id, "task-succeeded")] == LIFECYCLE


class EventsCommand:
    """``hutch -A apps.env_app events ARGS`` as a subprocess, its output collected."""

    def __init__(self, env: dict[str, str], *args: str, sigint_ignored: bool = False) -> None:
        """``sigint_ignored``: started as from a background job of a non-interactive
        shell (a CI runner, ``cmd &``), which hands its children SIGINT ignored."""
        ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored \
            else None
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hutch", "-A", "apps.env_app", "events", *args], env=env,
            cwd=TESTS_DIR.parent, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=ignore)
        self.lines: list[str] = []
        self.errors: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()
        threading.Thread(target=lambda: self.errors.extend(self.proc.stderr),
                         daemon=True).start()

    def wait_listening(self) -> None:
        assert eventually(lambda: any("listening" in e for e in self.errors), 30), self.errors

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.lines]


def test_hutch_events_json_and_dump_print_the_lifecycle_filtered(app, env, workers):
    workers(env, pool="threads").wait_ready()
    live = EventsCommand(env, "--json", "--task", "tests.add")
    dump = EventsCommand(env, "--dump", "--state", "SUCCESS", "--task", "tests.add", "-n", "1")
    try:
        live.wait_listening()
        dump.wait_listening()
        app.tasks["tests.mul"].delay(2, 2).get(timeout=30)
        r = app.tasks["tests.add"].delay(2, 2)
        assert r.get(timeout=30) == 4
        assert eventually(lambda: len([x for x in live.lines if r.id in x]) >= 4, 15), live.lines
        assert dump.proc.wait(15) == 0, dump.errors  # -n 1: exits by itself
    finally:
        live.proc.send_signal(signal.SIGINT)
        code = live.proc.wait(15)
    assert code == 0, live.errors  # Ctrl-C is a normal end
    events = live.events()
    assert {e["name"] for e in events} == {"tests.add"}
    assert [e["type"] for e in events if e["uuid"] == r.id] == LIFECYCLE
    assert all("local_received" in e for e in events)
    [done] = dump.events()
    assert done["type"] == "task-succeeded" and done["uuid"] == r.id
    assert "local_received" not in done and dump.lines[0].count(" ") == 0  # as sent: compact


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_hutch_events_ends_on_a_signal_even_when_started_with_sigint_ignored(env, stop):
    """Python raises no KeyboardInterrupt in a process that inherited SIGINT ignored;
    ``hutch events`` installs its own handlers, so Ctrl-C (or a stop) still ends it."""
    command = EventsCommand(env, "--json", sigint_ignored=True)
    try:
        command.wait_listening()
        command.proc.send_signal(stop)
        code = command.proc.wait(15)
    finally:
        if command.proc.poll() is None:
            command.proc.kill()
    assert code == 0, command.errors


def test_a_client_skips_task_sent_while_no_reader_is_bound_then_probes_again(
        app, monkeypatch):
    """RabbitMQ returns a task-sent that no reader's queue takes; the client then builds
    none for UNHEARD_PAUSE seconds, and the first one after the pause probes again."""
    monkeypatch.setattr(base, "UNHEARD_PAUSE", 600.0)  # the pause holds for the test
    monkeypatch.setattr(hutch_events, "HEARD_RECHECK", 0.0)  # the broker asked each time
    client = Client(tasks=app.tasks, conf=app.conf)
    try:
        assert client.broker.heard(TASK_EVENTS)  # nothing returned yet
        client.submit("tests.add", 1, 1)  # no reader: its task-sent comes back
        assert eventually(lambda: not client.broker.heard(TASK_EVENTS), 10)
        with Events(client.broker) as events:
            skipped = client.submit("tests.add", 2, 2)  # within the pause: none sent
            monkeypatch.setattr(base, "UNHEARD_PAUSE", 0.0)  # the pause is over
            probe = client.submit("tests.add", 3, 3)
            events.wait_for(probe.id, "task-sent")
            # in order on the reader's queue: a task-sent of `skipped` would be first
            assert [e["uuid"] for e in events.items] == [probe.id]
            assert events.of(skipped.id) == []
            assert client.broker.heard(TASK_EVENTS)
    finally:
        client.close()


def test_the_async_client_skips_task_sent_while_no_reader_is_bound(app, monkeypatch):
    monkeypatch.setattr(base, "UNHEARD_PAUSE", 600.0)

    async def scenario(events: Events) -> tuple[str, str]:
        async with AsyncClient(conf=app.conf, app=app) as client:
            await client.submit("tests.add", 1, 1)  # no reader yet: its task-sent comes back
            publisher = await client._get_publisher()
            assert not publisher.heard(TASK_EVENTS)  # the return came before the confirm
            events.receiver.start()
            skipped = await client.submit("tests.add", 2, 2)  # within the pause: none sent
            monkeypatch.setattr(base, "UNHEARD_PAUSE", 0.0)
            probe = await client.submit("tests.add", 3, 3)
            assert publisher.heard(TASK_EVENTS)  # a reader took it
            return skipped.id, probe.id

    events = Events(app.client().broker)
    try:
        skipped, probe = asyncio.run(scenario(events))
        events.wait_for(probe, "task-sent")
        assert [e["uuid"] for e in events.items] == [probe]
        assert events.of(skipped) == []
    finally:
        events.receiver.close()


def test_a_worker_builds_no_events_while_no_reader_is_bound_then_probes_again(
        app, monkeypatch):
    """A worker process's emitter (batched) probes like a client: once RabbitMQ returned
    a batch no reader took, it builds no event until the pause is over, and the first
    batch after it reaches a reader bound meanwhile."""
    monkeypatch.setattr(base, "UNHEARD_PAUSE", 600.0)
    monkeypatch.setattr(hutch_events, "HEARD_RECHECK", 0.0)
    client = app.client()
    emitter = hutch_events.TaskEvents.for_worker(client.broker, "probe@host", True)
    first, skipped, probe = (client.message("tests.add", (i, i)) for i in range(3))
    try:
        assert emitter.started(first)  # no reader: its batch comes back
        assert eventually(lambda: not emitter.wanted(), 10)
        with Events(client.broker) as events:
            assert emitter.started(skipped) is False  # within the pause: not even built
            monkeypatch.setattr(base, "UNHEARD_PAUSE", 0.0)  # the pause is over
            assert emitter.started(probe)
            events.wait_for(probe.id, "task-started")
            assert [e["uuid"] for e in events.items] == [probe.id]
            assert emitter.wanted()  # a reader took it
    finally:
        emitter.close()


def test_a_worker_that_found_no_reader_sends_its_events_again_once_one_binds(
        app, env, workers):
    """The pause after an unread batch ends: a reader that binds to a worker gone quiet
    gets the whole life of the tasks that run a pause later."""
    workers(env, pool="threads").wait_ready()
    assert app.tasks["tests.add"].delay(1, 1).get(timeout=30) == 2  # no reader: unread
    time.sleep(0.5)  # its batch has left and come back
    with Events(app.client().broker) as events:
        time.sleep(base.UNHEARD_PAUSE + 0.5)
        r = app.tasks["tests.add"].delay(2, 2)
        assert r.get(timeout=30) == 4
        assert [e["type"] for e in events.wait_for(r.id, "task-succeeded")] == LIFECYCLE
