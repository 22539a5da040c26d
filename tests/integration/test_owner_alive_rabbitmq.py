"""A worker that loses its RabbitMQ connection while it runs a task (hutch.worker.owners;
issue #17: a cluster node dies under the worker). RabbitMQ gives the unacknowledged
message to the other worker, whose claim finds it STARTED by a process still connected
to PostgreSQL: it waits for that process instead of running the task again, and
acknowledges the delivery unrun once the row says SUCCESS. Real RabbitMQ and PostgreSQL;
the connection is closed with ``rabbitmqctl close_connection``.

Without the wait, the second worker ran the task at once, a second time (the same
scenario with a SIGKILLed owner, where running it again is right, is in
tests/faults/test_worker_kills.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from apps.faults_app import register_fault_tasks
from apps.tasks import make_app
from hutch import AsyncResult, Hutch
from support.processes import WorkerProc, worker_env
from support.rabbit import close_connections
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@dataclass
class Scene:
    """An app, its workers' environment, the run log, and the workers started."""

    app: Hutch
    env: dict[str, str]
    run_log: Path
    workers: list[WorkerProc] = field(default_factory=list)

    def worker(self, queue: str = "celery") -> WorkerProc:
        proc = WorkerProc(self.env, app="apps.faults_app", pool="threads", concurrency=1,
                          queues=[queue]).start()
        self.workers.append(proc)
        return proc

    def runs(self) -> list[str]:
        return self.run_log.read_text().splitlines()

    @property
    def release(self) -> Path:
        """The file whose creation lets the task's runs end."""
        return self.run_log.with_suffix(".release")

    def run_started(self) -> AsyncResult:
        """The task, once its first run has begun; it runs until :attr:`release` exists
        (however long the second worker takes to start on a loaded machine)."""
        result = self.app.tasks["faults.record"].delay(str(self.run_log), 0,
                                                       str(self.release))
        assert eventually(lambda: len(self.runs()) == 1, 30)
        return result


@pytest.fixture
def scene(amqp_url, fresh_postgres_url, topology_prefix, tmp_path) -> Iterator[Scene]:
    run_log = tmp_path / "runs.log"
    run_log.touch()
    app = register_fault_tasks(make_app(amqp_url, fresh_postgres_url,
                                        topology_prefix=topology_prefix))
    scene = Scene(app, worker_env(amqp_url, fresh_postgres_url, topology_prefix), run_log)
    yield scene
    for proc in scene.workers:
        proc.stop()
    app.close()


def test_a_task_whose_worker_lost_rabbitmq_midway_runs_once(scene):
    owner = scene.worker()
    owner.wait_ready()
    result = scene.run_started()
    scene.worker().wait_ready()
    assert close_connections("worker", owner.proc.pid) >= 1
    assert eventually(lambda: any("waiting for it to finish" in line
                                  for w in scene.workers for line in w.lines), 30)
    scene.release.touch()
    assert result.get(timeout=30) == result.id
    time.sleep(1.0)  # a second run would have started by now
    assert len(scene.runs()) == 1, scene.runs()
    lines = [line for w in scene.workers for line in w.lines]
    waited = [line for line in lines if "waiting for it to finish" in line]
    assert waited, "".join(lines[-30:])
    assert json.loads(waited[0])["owner"].endswith(f":{owner.proc.pid}")
    assert eventually(lambda: any("task already finished" in line
                                  for w in scene.workers for line in w.lines), 10)
    assert result.state == "SUCCESS"
    assert all(w.proc.poll() is None for w in scene.workers)


def test_the_task_of_a_worker_that_died_still_runs_again(scene):
    """The owner SIGKILLed mid-task: no process holds its database connections, so the
    redelivery does not wait for it and the task runs again at once."""
    owner = scene.worker()
    owner.wait_ready()
    result = scene.run_started()
    survivor = scene.worker()
    survivor.wait_ready()
    owner.proc.kill()
    owner.proc.wait(10)
    scene.release.touch()
    assert result.get(timeout=30) == result.id
    assert len(scene.runs()) == 2
    assert not any("waiting for it to finish" in line for line in survivor.lines)
