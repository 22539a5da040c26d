"""One real prefork worker for a whole test module of the dashboard's actions, on the
real RabbitMQ and this run's PostgreSQL database, under a topology prefix of the
module's own: import the fixtures into the module (``from support.web_worker import
node, web_app, web_worker``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from apps.tasks import make_app
from hutch import Hutch
from support.processes import WorkerProc, worker_env
from support.rabbit import delete_prefixed


@pytest.fixture(scope="module")
def node() -> str:
    """The worker's name (``-n``)."""
    return f"act-{uuid.uuid4().hex[:8]}@test"


@pytest.fixture(scope="module")
def module_prefix(amqp_url: str) -> Iterator[str]:
    name = f"hutchtest.{uuid.uuid4().hex[:10]}"
    yield name
    delete_prefixed(name)


@pytest.fixture(scope="module")
def web_app(amqp_url: str, postgres_url: str, module_prefix: str) -> Iterator[Hutch]:
    """The test tasks' app on the module's prefix (what ``hutch web -A`` would load)."""
    app = make_app(amqp_url, postgres_url, topology_prefix=module_prefix)
    yield app
    app.close()


@pytest.fixture(scope="module")
def web_worker(amqp_url: str, postgres_url: str, module_prefix: str,
               node: str) -> Iterator[WorkerProc]:
    """A prefork worker of two children (terminate needs prefork), heartbeat every 0.5 s."""
    env = worker_env(amqp_url, postgres_url, module_prefix,
                     HUTCH_WORKER_HEARTBEAT_INTERVAL="0.5")
    proc = WorkerProc(env, pool="prefork", concurrency=2, extra_args=("-n", node)).start()
    proc.wait_ready(count=2)
    yield proc
    if proc.proc and proc.proc.poll() is None:
        proc.proc.kill()
        proc.proc.wait(10)
