"""Stopping a worker with signals (issue #11), on the real RabbitMQ and PostgreSQL.

A signal sent to the worker's whole process group (``systemctl stop`` without
``KillMode=mixed``, Ctrl-C in a terminal) reaches the prefork supervisor and every
child at once: it is one warm shutdown, so the running task ends SUCCESS and the
worker exits 0. A second signal to the supervisor, or SIGQUIT, is a cold shutdown:
the running task is abandoned and runs again on another worker.
"""

from __future__ import annotations

import json
import os
import signal

import pytest

from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

TASK_SECONDS = 4


def _running(app, workers, env, tmp_path, pool: str):
    """A worker of ``pool`` running a task of TASK_SECONDS (long enough to be still
    running when the test's signals arrive): (worker, result, marker file)."""
    w = workers(env, pool=pool, concurrency=2)
    w.wait_ready(count=2 if pool == "prefork" else 1)
    marker = tmp_path / "ran.txt"
    r = app.tasks["tests.sleep"].delay(TASK_SECONDS, str(marker))
    store = app.client().store
    assert eventually(lambda: getattr(store.get(r.id), "state", None) == "STARTED",
                      timeout=20), w.output()[-3000:]
    return w, r, marker


@pytest.mark.parametrize(("pool", "sig"), [
    ("prefork", signal.SIGTERM), ("prefork", signal.SIGINT),
    ("threads", signal.SIGINT), ("solo", signal.SIGTERM)])
def test_a_signal_to_the_whole_process_group_is_one_warm_shutdown(app, env, workers,
                                                                   tmp_path, pool, sig):
    w, r, marker = _running(app, workers, env, tmp_path, pool)
    w.signal_group(sig)
    assert w.proc.wait(30) == 0, w.output()[-3000:]
    assert app.client().store.get(r.id).state == "SUCCESS", w.output()[-3000:]
    assert len(marker.read_text().splitlines()) == 1
    assert "cold shutdown" not in w.output()


@pytest.mark.parametrize("second", ["sigterm_to_supervisor", "sigquit_to_supervisor",
                                    "sigquit_to_group"])
def test_cold_shutdown_of_a_prefork_worker_abandons_the_running_task(app, env, workers,
                                                                     tmp_path, second):
    """After a warm group-wide SIGTERM, a second SIGTERM or a SIGQUIT to the supervisor
    (or SIGQUIT to the group, with no warm stop first) kills the children: the task never
    finishes there, its message goes back to the queue and another worker runs it once."""
    w, r, marker = _running(app, workers, env, tmp_path, "prefork")
    if second == "sigquit_to_group":
        w.signal_group(signal.SIGQUIT)
    else:
        w.signal_group(signal.SIGTERM)
        assert eventually(lambda: "warm shutdown" in w.output(), timeout=10)
        w.signal(signal.SIGTERM if second == "sigterm_to_supervisor" else signal.SIGQUIT)
    assert w.proc.wait(30) != 0, w.output()[-3000:]
    assert "cold shutdown" in w.output()
    assert not marker.exists()  # the abandoned run never got to its end
    assert app.client().store.get(r.id).state == "STARTED"
    workers(env, pool="threads", concurrency=2).wait_ready()
    assert r.get(timeout=30) == TASK_SECONDS
    assert len(marker.read_text().splitlines()) == 1


def test_prefork_children_log_the_workers_pool_and_concurrency(env, workers):
    w = workers(env, pool="prefork", concurrency=2)
    w.wait_ready(count=2)
    ready = w.ready_lines()
    assert {(line["pool"], line["concurrency"]) for line in ready} == {("prefork", 2)}
    assert sorted(line["child"] for line in ready) == [0, 1]
    assert w.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_group_signal_while_the_children_start_is_a_warm_shutdown(env, workers, sig):
    """Sent as soon as the supervisor has forked: each child gets its stop before,
    during or after its setup, and exits 0 without consuming for ever."""
    w = workers(env, pool="prefork", concurrency=2)
    assert eventually(lambda: "prefork supervisor ready" in w.output(), timeout=30)
    w.signal_group(sig)
    assert w.proc.wait(30) == 0, w.output()[-3000:]
    assert "cold shutdown" not in w.output() and "child failed" not in w.output()


def test_one_child_is_stopped_warm_by_sigusr2_and_ignores_sigterm(app, env, workers, tmp_path):
    """docs/ops.md: ``kill -USR2 CHILD`` lets it finish its task and exit (it is replaced);
    ``kill -TERM CHILD`` is ignored, ``kill -USR1 CHILD`` only dumps its stacks."""
    w, r, marker = _running(app, workers, env, tmp_path, "prefork")
    child = int(app.client().store.get(r.id).worker.rsplit(":", 1)[1])
    os.kill(child, signal.SIGTERM)
    os.kill(child, signal.SIGUSR1)
    os.kill(child, signal.SIGUSR2)
    assert r.get(timeout=30) == TASK_SECONDS
    assert eventually(lambda: len(w.ready_lines()) == 3, timeout=30), w.output()[-3000:]
    exits = [json.loads(line) for line in w.lines if "worker child exited" in line]
    assert [(e["pid"], e["exit"]) for e in exits] == [(child, 0)]
    assert w.stop() == 0
