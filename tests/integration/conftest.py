"""Fixtures shared by the integration tests (real RabbitMQ and PostgreSQL)."""

import pytest

from apps.tasks import make_app
from support.processes import WorkerProc, worker_env


@pytest.fixture
def app(amqp_url, postgres_url, topology_prefix):
    """The shared test tasks on RabbitMQ with results in this run's PostgreSQL database."""
    app = make_app(amqp_url, postgres_url, topology_prefix=topology_prefix)
    yield app
    app.close()


@pytest.fixture
def later_app(amqp_url, postgres_url, topology_prefix):
    """``app`` with ``broker_confirm_wait`` off: submits return before their confirm."""
    app = make_app(amqp_url, postgres_url, topology_prefix=topology_prefix,
                   broker_confirm_wait=False)
    yield app
    app.close()


@pytest.fixture
def env(amqp_url, postgres_url, topology_prefix):
    """Environment for worker subprocesses on this test's prefix and database."""
    return worker_env(amqp_url, postgres_url, topology_prefix)


@pytest.fixture
def workers():
    """``workers(env, pool=..., concurrency=...)`` starts a worker subprocess; all are
    killed at the end of the test."""
    started: list[WorkerProc] = []

    def start(env, **kwargs) -> WorkerProc:
        proc = WorkerProc(env, **kwargs).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(10)
