"""hutch.signals on RabbitMQ + PostgreSQL: which process sends which signal.

A prefork worker runs ``apps.signal_app``, whose receivers append one JSON line per
signal (with the sending process's pid) to a file: the supervisor sends the worker's
lifecycle and the command's signals, each child its own process signals and every task
signal of the tasks it runs. The sending process's publish signals are checked here,
for the synchronous and the asyncio client.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict

import pytest

from apps.tasks import CustomError
from hutch import AsyncClient, signals
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

SUPERVISOR_ONLY = {"import_modules", "after_setup_logger", "worker_init", "worker_ready",
                   "worker_shutting_down", "worker_shutdown"}
CHILD_ONLY = {"worker_process_init", "worker_process_shutdown", "task_received",
              "task_prerun", "task_success", "task_failure", "task_postrun"}


def _lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_prefork_supervisor_and_children_send_their_own_signals(app, env, workers, tmp_path):
    log = tmp_path / "signals.jsonl"
    w = workers({**env, "SIGNAL_APP_LOG": str(log)}, pool="prefork", concurrency=2,
                app="apps.signal_app")
    w.wait_ready(count=2)
    assert eventually(lambda: any(li["signal"] == "worker_ready" for li in _lines(log)),
                      timeout=30), w.output()[-3000:]
    ok = app.tasks["tests.add"].delay(1, 2)
    failed = app.tasks["tests.fail"].delay("on purpose")
    assert ok.get(timeout=30) == 3
    with pytest.raises(CustomError):
        failed.get(timeout=30)
    assert eventually(lambda: sum(li["signal"] == "task_postrun" for li in _lines(log)) == 2,
                      timeout=30)
    assert w.stop() == 0, w.output()[-3000:]

    lines = _lines(log)
    pids: dict[str, set[int]] = defaultdict(set)
    for line in lines:
        pids[line["signal"]].add(line["pid"])
    supervisor = w.proc.pid
    assert {name for name in SUPERVISOR_ONLY if pids[name] != {supervisor}} == set(), lines
    children = pids["worker_process_init"]
    assert len(children) == 2 and supervisor not in children
    assert pids["worker_process_shutdown"] == children
    assert {name for name in CHILD_ONLY if not pids[name] <= children} == set(), lines
    postrun = {li["task_id"]: li["state"] for li in lines if li["signal"] == "task_postrun"}
    assert postrun == {ok.id: "SUCCESS", failed.id: "FAILURE"}
    [stopping] = [li for li in lines if li["signal"] == "worker_shutting_down"]
    assert (stopping["sig"], stopping["how"], stopping["exitcode"]) == ("SIGTERM", "Warm", 0)
    shutdowns = [li for li in lines if li["signal"] == "worker_process_shutdown"]
    assert {li["exitcode"] for li in shutdowns} == {0}
    order = [li["signal"] for li in lines if li["pid"] == supervisor]
    assert order[:3] == ["import_modules", "after_setup_logger", "worker_init"]
    assert order[-2:] == ["worker_shutting_down", "worker_shutdown"]


def test_both_clients_send_the_publish_signals_on_rabbitmq(app):
    seen: list[tuple[str, str, str]] = []

    def before(sender, headers, routing_key, **_):
        seen.append(("before", sender, headers["id"]))

    def after(sender, headers, routing_key, **_):
        seen.append(("after", sender, headers["id"]))

    async def submit_async():
        async with AsyncClient(conf=app.conf) as client:
            return await client.submit("tests.mul", 2, 3)

    signals.before_task_publish.connect(before)
    signals.after_task_publish.connect(after)
    try:
        sync = app.tasks["tests.add"].delay(1, 1)
        aio = asyncio.run(submit_async())
    finally:
        signals.before_task_publish.disconnect(before)
        signals.after_task_publish.disconnect(after)
    assert seen == [("before", "tests.add", sync.id), ("after", "tests.add", sync.id),
                    ("before", "tests.mul", aio.id), ("after", "tests.mul", aio.id)]
