"""Revocation on real workers: broadcast, stored in PostgreSQL, --statedb, terminate."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid

import pytest
from sqlalchemy import delete

from hutch.errors import ConfigurationError, TaskRevokedError
from hutch.results.models import revoked
from support.processes import TESTS_DIR
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def _state(app, task_id):
    return app.AsyncResult(task_id).state


def test_revoked_waiting_task_is_revoked_at_once_and_never_runs(app, env, workers, tmp_path,
                                                                broker):
    marker = tmp_path / "ran"
    w = workers(env, pool="prefork", concurrency=2)
    w.wait_ready(count=2)
    r = app.tasks["tests.sleep"].apply_async((0, str(marker)), countdown=2)
    also = app.tasks["tests.sleep"].apply_async((0, str(marker)), countdown=2)
    assert r.revoke() is None  # as Celery's AsyncResult.revoke(); docs/guide.md
    assert app.control.revoke([also.id, r.id]) == [also.id]  # the ids it marked just now
    assert r.state == "REVOKED" and also.state == "REVOKED"
    with pytest.raises(TaskRevokedError):
        r.get(timeout=5)
    kept = app.tasks["tests.sleep"].apply_async((0, str(marker)), countdown=2)
    assert kept.get(timeout=20) == 0  # ran after the revoked one was due
    assert marker.read_text().count("\n") == 1
    assert eventually(lambda: broker.queue_depths(["celery"])["celery"][0] == 0)
    assert broker.dead_letter_count("celery") == 0  # revoked: acknowledged, not dead-lettered
    assert w.stop() == 0


def test_revocation_outlives_every_worker(app, env, workers, tmp_path):
    """Revoked while one worker runs; that worker stops; a new one, started after the
    broadcast, learns it from the database when the task becomes due."""
    marker = tmp_path / "ran"
    first = workers(env, pool="solo")
    first.wait_ready()
    r = app.tasks["tests.sleep"].apply_async((0, str(marker)), countdown=4)
    app.control.revoke(r.id)
    assert first.stop() == 0
    second = workers(env, pool="solo")
    second.wait_ready()
    probe = app.tasks["tests.sleep"].apply_async((0, str(marker)), countdown=5)
    assert probe.get(timeout=30) == 0
    assert marker.read_text().count("\n") == 1  # only the probe ran
    assert _state(app, r.id) == "REVOKED"
    assert "revoked" in second.output()
    assert second.stop() == 0


def test_prefetched_task_revoked_while_worker_is_busy(app, env, workers, tmp_path):
    marker = tmp_path / "ran"
    w = workers(env, pool="solo")
    w.wait_ready()
    busy = app.tasks["tests.sleep"].delay(2)
    waiting = [app.tasks["tests.sleep"].delay(0, str(marker)) for _ in range(3)]
    assert eventually(lambda: _state(app, waiting[1].id) == "RECEIVED")
    marked = app.control.revoke(waiting[1].id)
    assert marked == []  # a worker holds it: that worker marks it when it drops it
    assert busy.get(timeout=20) == 2
    assert waiting[0].get(timeout=10) == 0 and waiting[2].get(timeout=10) == 0
    assert eventually(lambda: _state(app, waiting[1].id) == "REVOKED")
    assert marker.read_text().count("\n") == 2
    assert w.stop() == 0


def test_statedb_keeps_a_local_copy(app, env, workers, tmp_path, postgres_url):
    state_file = tmp_path / "worker.state"
    marker = tmp_path / "ran"
    w = workers(env, pool="solo", extra_args=["--statedb", str(state_file)])
    w.wait_ready()
    r = app.tasks["tests.sleep"].apply_async((0, str(marker)), countdown=5)
    app.control.revoke(r.id)
    assert eventually(lambda: _in_state_file(state_file, r.id))
    assert w.stop() == 0
    with app.client().store.engine.begin() as conn:  # a DBA cleared the table
        conn.execute(delete(revoked))
    again = workers(env, pool="solo", extra_args=[f"--statedb={state_file}"])
    again.wait_ready()
    probe = app.tasks["tests.sleep"].apply_async((0, str(marker)), countdown=6)
    assert probe.get(timeout=30) == 0
    assert marker.read_text().count("\n") == 1
    assert again.stop() == 0


def _in_state_file(path, task_id) -> bool:
    if not path.exists():
        return False
    with sqlite3.connect(path) as db:
        return db.execute("SELECT 1 FROM revoked WHERE task_id = ?", (task_id,)).fetchone() is not None


@pytest.mark.parametrize("sig", [None, "SIGKILL"])
def test_terminate_on_prefork_kills_the_child_and_the_pool_replaces_it(app, env, workers,
                                                                       tmp_path, sig):
    marker = tmp_path / "ran"
    w = workers(env, pool="prefork", concurrency=1)
    w.wait_ready()
    r = app.tasks["tests.sleep"].delay(30, str(marker))
    assert eventually(lambda: _state(app, r.id) == "STARTED")
    app.control.revoke([r.id], terminate=True, signal=sig)
    with pytest.raises(TaskRevokedError, match="terminated"):
        r.get(timeout=15)  # well before the task's 30 s
    assert app.tasks["tests.add"].delay(1, 1).get(timeout=20) == 2  # a new child serves
    assert "replacing it" in w.output()
    assert not marker.exists()
    assert w.stop() == 0


def test_terminate_on_asyncio_cancels_the_task(app, env, workers):
    w = workers(env, pool="asyncio", concurrency=4)
    w.wait_ready()
    r = app.tasks["tests.asleep"].delay(30)
    assert eventually(lambda: _state(app, r.id) == "STARTED")
    r.revoke(terminate=True)
    with pytest.raises(TaskRevokedError, match="terminated"):
        r.get(timeout=10)
    assert app.tasks["tests.asleep"].delay(0.1).get(timeout=10) == 0.1
    assert w.stop() == 0


def test_terminate_on_threads_is_refused_with_a_clear_error(app, env, workers):
    w = workers(env, pool="threads", concurrency=2)
    w.wait_ready()
    # long enough that a loaded machine's polls still see it STARTED (1.5 s was missed)
    r = app.tasks["tests.sleep"].delay(5)
    assert eventually(lambda: _state(app, r.id) == "STARTED")
    r.revoke(terminate=True)
    assert r.get(timeout=30) == 5  # it keeps running to the end
    assert "terminate is not supported on this pool" in w.output()
    assert w.stop() == 0


def test_cli_control_revoke(app, env, tmp_path):
    r = app.tasks["tests.add"].apply_async((1, 2), countdown=60)
    out = subprocess.run([sys.executable, "-m", "hutch", "-A", "apps.env_app", "control",
                          "revoke", r.id, "--terminate", "--signal", "KILL"],
                         env=env, capture_output=True, text=True, cwd=TESTS_DIR.parent,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "revoked 1 task(s); 1 not started yet are now REVOKED" in out.stderr
    assert r.state == "REVOKED"
    bad = subprocess.run([sys.executable, "-m", "hutch", "-A", "apps.env_app", "control",
                          "revoke", r.id, "--signal", "SIGNOPE"],
                         env=env, capture_output=True, text=True, cwd=TESTS_DIR.parent,
                         timeout=60)
    assert bad.returncode == 2 and "unknown signal 'SIGNOPE'" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_revoke_refuses_what_cannot_be_a_task_id(app):
    with pytest.raises(ConfigurationError, match="task_id"):
        app.control.revoke("")
    with pytest.raises(ConfigurationError, match="task_id"):
        app.control.revoke([])


def test_revoke_with_replies_from_two_prefork_workers(app, env, workers):
    """reply=True: every worker answers with Celery's text, each prefork child having
    applied it; a destination picks whose answers to wait for, and the revocation
    still reaches every worker (the other one refuses the task too)."""
    tag = uuid.uuid4().hex[:8]
    alpha, beta = f"alpha-{tag}@test", f"beta-{tag}@test"
    for name in (alpha, beta):
        workers(env, queues=(f"q-{tag}",), concurrency=2, extra_args=("-n", name)
                ).wait_ready(count=2)
    first = app.tasks["tests.add"].apply_async((1, 1), countdown=60)
    answers = app.control.revoke(first.id, reply=True, timeout=3)
    flagged = {"ok": f"tasks {first.id} flagged as revoked"}
    assert sorted(answers, key=lambda a: list(a)) == [{alpha: flagged}, {beta: flagged}]
    second = app.tasks["tests.add"].apply_async((2, 2), countdown=60)
    out = subprocess.run([sys.executable, "-m", "hutch", "-A", "apps.env_app", "control",
                          "revoke", second.id, "-d", alpha, "-t", "10", "--json"],
                         env=env, capture_output=True, text=True, cwd=TESTS_DIR.parent,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {alpha: {"ok": f"tasks {second.id} flagged as revoked"}}
    assert "1 not started yet are now REVOKED; 1 worker answered" in out.stderr
    known = app.control.inspect([alpha, beta], timeout=10).revoked()
    assert {first.id, second.id} <= set(known[alpha]) and {first.id, second.id} <= set(known[beta])
    bad = app.control.broadcast("revoke", {"ids": "nope"}, [alpha], reply=True, timeout=10)
    assert bad == [{alpha: {"error": "ValueError: revoke: 'ids' must be a list of task ids"}}]
