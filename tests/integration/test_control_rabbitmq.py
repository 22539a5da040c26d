"""Steering running workers (issue #13) on the real RabbitMQ and PostgreSQL: two
prefork workers of two children each answer rate_limit, time_limit, add_consumer,
cancel_consumer, enable_events and disable_events (each child for itself, merged
per worker), from one with ``--destination``, and each command changes what the
workers do; bad arguments get error replies and the workers go on. That an added
route survives a reconnect is in test_amqp_broker.py."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from hutch.errors import SoftTimeLimitExceeded
from hutch.results.records import RECEIVED, SUCCESS
from support.events import Events
from support.processes import TESTS_DIR
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def hutch(env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hutch", "-A", "apps.env_app", *args],
                          env=env, capture_output=True, text=True, cwd=TESTS_DIR.parent,
                          timeout=60)


def control(env, *args: str) -> dict:
    """``hutch control ARGS --json``'s replies; it must exit 0."""
    done = hutch(env, "control", *args, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def ran_on(app, task_id: str) -> str:
    """The hostname of the worker whose process ran the task."""
    worker = app.client().store.get(task_id).worker
    return worker.rsplit(":", 1)[0]


@pytest.fixture
def pair(app, env, workers):
    """Two prefork workers of two children: (alpha, qa) and (beta, qb)."""
    tag = uuid.uuid4().hex[:8]
    names = {f"alpha-{tag}@test": f"qa-{tag}", f"beta-{tag}@test": f"qb-{tag}"}
    started = {name: workers(env, queues=(queue,), concurrency=2, extra_args=("-n", name))
               for name, queue in names.items()}
    for proc in started.values():
        proc.wait_ready(count=2)
    return names, started, tag


def test_consumers_are_added_and_cancelled_per_worker(app, env, pair):
    names, started, tag = pair
    (alpha, qa), (beta, qb) = names.items()
    qx = f"qx-{tag}"
    broker = app.client().broker
    both = f"{alpha},{beta}"
    waiting = app.tasks["tests.add"].apply_async((1, 2), queue=qx)
    assert eventually(lambda: broker.queue_stats(qx).ready == 1, 10)

    assert control(env, "add_consumer", qx, "-d", alpha) == {alpha: {"ok": f"add consumer {qx}"}}
    assert waiting.get(timeout=30) == 3 and ran_on(app, waiting.id) == alpha
    assert broker.queue_stats(qx).consumers == 2  # each child of alpha
    assert control(env, "add_consumer", qx, "-d", both, "-t", "10") == {
        alpha: {"ok": f"already consuming from {qx!r}"}, beta: {"ok": f"add consumer {qx}"}}
    assert app.control.inspect([alpha, beta], 10).active_queues() == {
        name: [{"name": q, "routing_key": q, "durable": True, "exclusive": False,
                "auto_delete": False} for q in queues]
        for name, queues in ((alpha, (qa, qx)), (beta, (qb, qx)))}

    assert app.control.cancel_consumer(qx, [alpha, beta], reply=True, timeout=10) == [
        {alpha: {"ok": f"no longer consuming from {qx}"}},
        {beta: {"ok": f"no longer consuming from {qx}"}}]
    assert eventually(lambda: broker.queue_stats(qx).consumers == 0, 10)
    held = [app.tasks["tests.add"].apply_async((i, i), queue=qx) for i in range(3)]
    assert app.tasks["tests.mul"].apply_async((2, 3), queue=qa).get(timeout=30) == 6
    assert app.tasks["tests.mul"].apply_async((2, 4), queue=qb).get(timeout=30) == 8
    stats = broker.queue_stats(qx)
    assert (stats.ready, stats.consumers) == (3, 0)
    assert all(r.state not in (RECEIVED, SUCCESS) for r in held)
    assert app.control.inspect([alpha], 10).active_queues()[alpha][0]["name"] == qa
    assert control(env, "cancel_consumer", qx, "-d", alpha) == {
        alpha: {"ok": f"not consuming from {qx!r}"}}

    assert control(env, "add_consumer", qx, "-d", beta) == {beta: {"ok": f"add consumer {qx}"}}
    assert [r.get(timeout=30) for r in held] == [0, 2, 4]
    assert {ran_on(app, r.id) for r in held} == {beta}
    for proc in started.values():
        assert proc.stop() == 0


def test_rate_and_time_limits_events_and_bad_arguments(app, env, pair, tmp_path):
    names, started, _ = pair
    (alpha, qa), (beta, qb) = names.items()
    both = f"{alpha},{beta}"

    # rate_limit: 1/m for the worker, each child its 1/2: one token each, then a wait
    assert control(env, "rate_limit", "tests.add", "1/m", "-d", both, "-t", "10") == {
        alpha: {"ok": "new rate limit set successfully"},
        beta: {"ok": "new rate limit set successfully"}}
    limited = [app.tasks["tests.add"].apply_async((i, 1), queue=qa) for i in range(6)]
    assert eventually(lambda: sum(r.state == SUCCESS for r in limited) >= 1, 30)
    for i in range(4):  # unlimited tasks on the same children run after the limited ones
        assert app.tasks["tests.mul"].apply_async((i, 2), queue=qa).get(timeout=30) == i * 2
    assert 1 <= sum(r.state == SUCCESS for r in limited) <= 2
    assert app.tasks["tests.add"].apply_async((1, 1), queue=qb).get(timeout=30) == 2
    assert app.control.rate_limit("tests.add", 0, [beta], reply=True, timeout=10) == [
        {beta: {"ok": "rate limit disabled successfully"}}]
    assert [app.tasks["tests.add"].apply_async((i, 0), queue=qb).get(timeout=30)
            for i in range(4)] == [0, 1, 2, 3]

    # bad arguments: error replies from every child, merged; the workers go on
    refused = hutch(env, "control", "rate_limit", "tests.nope", "1/s", "-d", both, "--json")
    assert refused.returncode == 1 and "2 refused" in refused.stderr
    assert json.loads(refused.stdout) == {
        name: {"error": "ValueError: rate_limit: unknown task 'tests.nope'"}
        for name in (alpha, beta)}
    bad = app.control.rate_limit("tests.add", "fast", [alpha], reply=True, timeout=10)
    assert bad is not None and "is not a rate" in bad[0][alpha]["error"]
    assert app.control.broadcast("time_limit", {"soft": 1}, [beta], reply=True, timeout=10) == [
        {beta: {"error": "ValueError: time_limit: 'task_name' must be a task name"}}]
    soft_over_hard = hutch(env, "control", "time_limit", "tests.sleep", "5", "2", "-d", beta)
    assert soft_over_hard.returncode == 1 and "must be shorter" in soft_over_hard.stdout
    assert app.control.inspect([alpha, beta], 10).ping() == {
        alpha: {"ok": "pong"}, beta: {"ok": "pong"}}

    # disable_events everywhere, then enable on alpha only
    with Events(app.client().broker) as events:
        assert control(env, "disable_events", "-d", both, "-t", "10") == {
            alpha: {"ok": "task events disabled"}, beta: {"ok": "task events disabled"}}
        quiet = [app.tasks["tests.mul"].apply_async((1, 1), queue=q) for q in (qa, qb)]
        assert [r.get(timeout=30) for r in quiet] == [1, 1]
        assert control(env, "enable_events", "-d", alpha) == {alpha: {"ok": "task events enabled"}}
        loud = [app.tasks["tests.mul"].apply_async((2, 2), queue=qa) for _ in range(4)]
        still_quiet = app.tasks["tests.mul"].apply_async((3, 3), queue=qb)
        assert [r.get(timeout=30) for r in loud] == [4] * 4 and still_quiet.get(timeout=30) == 9
        for r in loud:  # both children of alpha send again
            events.wait_for(r.id, "task-succeeded")
        for r in [*quiet, still_quiet]:  # the client's task-sent at most
            assert set(events.types_of(r.id)) <= {"task-sent"}

    # time_limit: soft on alpha (raised in the task), hard on beta (child killed)
    assert control(env, "time_limit", "tests.sleep", "0.5", "-d", alpha) == {
        alpha: {"ok": "time limits set successfully"}}
    with pytest.raises(SoftTimeLimitExceeded):
        app.tasks["tests.sleep"].apply_async((30,), queue=qa).get(timeout=30)
    assert app.control.time_limit("tests.sleep", hard=1.5, destination=[beta], reply=True,
                                  timeout=10) == [{beta: {"ok": "time limits set successfully"}}]
    marker = tmp_path / "finished"
    with pytest.raises(Exception) as info:
        app.tasks["tests.sleep"].apply_async((30, str(marker)), queue=qb).get(timeout=60)
    assert type(info.value).__name__ == "TimeLimitExceeded"
    assert not marker.exists()
    assert app.tasks["tests.sleep"].apply_async((0.1,), queue=qb).get(timeout=30) == 0.1
    for proc in started.values():
        assert proc.stop() == 0
