"""Inspecting workers (issue #13) on the real RabbitMQ and PostgreSQL: two prefork
workers of two children each answer ping, active, registered and stats (each child
for itself, merged per worker), from one with ``--destination``; bad requests get
error replies without disturbing them; ``hutch status`` tells who answers."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from hutch.brokers.base import CONTROL
from hutch.messages import ControlReply
from support.processes import TESTS_DIR
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def hutch(env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hutch", "-A", "apps.env_app", *args],
                          env=env, capture_output=True, text=True, cwd=TESTS_DIR.parent,
                          timeout=60)


def test_two_prefork_workers_answer_inspect_and_status(app, env, workers):
    tag = uuid.uuid4().hex[:8]
    alpha, beta = f"alpha-{tag}@test", f"beta-{tag}@test"
    qa, qb = f"qa-{tag}", f"qb-{tag}"
    started = {}
    for name, queue in ((alpha, qa), (beta, qb)):
        started[name] = workers({**env, "HUTCH_WORKER_HEARTBEAT_INTERVAL": "0.5"},
                                queues=(queue,), concurrency=2, extra_args=("-n", name))
        started[name].wait_ready(count=2)
    inspect = app.control.inspect(timeout=10, limit=2)  # back once both answered in full

    assert inspect.ping() == {alpha: {"ok": "pong"}, beta: {"ok": "pong"}}
    assert app.control.inspect([beta], timeout=10).ping() == {beta: {"ok": "pong"}}
    pinged = hutch(env, "inspect", "ping", "-d", alpha, "--json")
    assert pinged.returncode == 0, pinged.stderr
    assert json.loads(pinged.stdout) == {alpha: {"ok": "pong"}}

    registered = inspect.registered()
    assert registered is not None and set(registered) == {alpha, beta}
    assert {"tests.add", "tests.sleep"} <= set(registered[alpha])

    stats = inspect.stats()
    assert stats is not None
    for name in (alpha, beta):
        assert stats[name]["pid"] == started[name].proc.pid
        assert len(stats[name]["pool"]["processes"]) == 2
        assert started[name].proc.pid not in stats[name]["pool"]["processes"]
        assert stats[name]["pool"]["max-concurrency"] == 2

    running = app.tasks["tests.sleep"].apply_async((20,), queue=qa)
    active = eventually(lambda: (app.control.inspect([alpha, beta], 10).active() or {})
                        .get(alpha), 20)
    assert [(t["id"], t["name"], t["delivery_info"]["routing_key"]) for t in active] == [
        (running.id, "tests.sleep", qa)]
    assert active[0]["worker_pid"] in stats[alpha]["pool"]["processes"]
    assert app.control.inspect([beta], timeout=10).active() == {beta: []}
    listed = hutch(env, "inspect", "active", "-d", f"{alpha},{beta}")
    assert listed.returncode == 0 and running.id in listed.stdout, listed.stderr
    assert app.control.inspect([alpha, beta], 10).active_queues() == {
        name: [{"name": q, "routing_key": q, "durable": True, "exclusive": False,
                "auto_delete": False}] for name, q in ((alpha, qa), (beta, qb))}
    found = hutch(env, "inspect", "query_task", running.id, "-d", f"{alpha},{beta}", "--json")
    assert found.returncode == 0, found.stderr
    assert {h: {i: s for i, (s, _) in r.items()} for h, r in json.loads(found.stdout).items()} \
        == {alpha: {running.id: "active"}, beta: {}}

    # bad requests: error replies from every child, a warning in the log, work goes on
    assert app.control.inspect([alpha], 10).call("no_such_command") == {
        alpha: {"error": "unknown command 'no_such_command'"}}
    broker = app.client().broker
    inbox = broker.open_inbox()
    try:
        broker.broadcast(CONTROL, json.dumps({"command": "ping", "arguments": [],
                                              "reply_to": inbox.name, "ticket": "t"}).encode())
        replies = [ControlReply.decode(inbox.get(10) or b"") for _ in range(4)]
    finally:
        inbox.close()
    assert {r.error for r in replies if r} == {"control request: arguments must be an object"}
    broker.broadcast(CONTROL, b"\xff garbage")
    assert eventually(lambda: "control request refused" in started[alpha].output(), 10)
    assert app.tasks["tests.add"].apply_async((2, 3), queue=qb).get(timeout=30) == 5
    assert inspect.ping() == {alpha: {"ok": "pong"}, beta: {"ok": "pong"}}

    status = hutch(env, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert {h: s for h, s in json.loads(status.stdout).items() if tag in h} == {
        alpha: "OK", beta: "OK"}

    running.revoke(terminate=True)  # the warm stops below need not wait for it
    for w in started.values():
        assert w.stop() == 0
    none = hutch(env, "status")
    assert none.returncode == 1, none.stdout
    assert f"{alpha}: offline" in none.stdout and f"{beta}: offline" in none.stdout
    assert hutch(env, "inspect", "ping", "-t", "0.3").returncode == 1
