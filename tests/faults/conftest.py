"""Fixtures for the fault scenarios: their scale (short in ``make test``, long in
``make faults``), a ledger per scenario, and worker subprocesses that are killed,
whole process trees, at the end of each test.

Every scenario runs on this session's private RabbitMQ node (``private_rabbit``), also
those that do not restart it: a scenario's load, or a worker caught in a loop by a bad
message, must not reach the broker other test runs share.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from apps.faults_app import register_fault_tasks
from apps.tasks import make_app
from faults.accounting import Ledger, kill_tree
from hutch import Hutch
from support.processes import WorkerProc, worker_env

LONG_MODE = os.environ.get("HUTCH_FAULTS", "") == "long"
"""``HUTCH_FAULTS=long`` selects the long mode (``make faults``); read at import, since
the tests run without HUTCH_* variables (tests/conftest.py)."""


@dataclass(frozen=True)
class Scale:
    """How big each scenario is."""

    kill_tasks: int  # worker SIGKILL under load
    kill_rounds: int
    outage_tasks: int  # RabbitMQ outages under load
    outages: int
    pg_tasks: int  # PostgreSQL crash
    beat_kills: int
    malformed_copies: int  # of each malformed kind, mixed into good tasks
    good_tasks: int
    soak_tasks: int


SHORT = Scale(kill_tasks=1500, kill_rounds=3, outage_tasks=600, outages=1, pg_tasks=200,
              beat_kills=1, malformed_copies=1, good_tasks=200, soak_tasks=2000)
LONG = Scale(kill_tasks=20000, kill_rounds=20, outage_tasks=6000, outages=4, pg_tasks=1000,
             beat_kills=4, malformed_copies=5, good_tasks=5000, soak_tasks=50000)


@pytest.fixture
def scale() -> Scale:
    return LONG if LONG_MODE else SHORT


@pytest.fixture
def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Ledger:
    """The scenario's books, named after the test (its parameters included)."""
    name = request.node.name.removeprefix("test_")
    return Ledger(name, tmp_path)


@pytest.fixture
def fault_workers() -> Iterator:
    """``fault_workers(env, **kwargs)`` starts ``hutch -A apps.faults_app worker``; every
    one still running at the end is SIGKILLed with its children."""
    started: list[WorkerProc] = []

    def start(env: dict[str, str], **kwargs) -> WorkerProc:
        proc = WorkerProc(env, app="apps.faults_app", **kwargs).start()
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.proc is not None and proc.proc.poll() is None:
            kill_tree(proc.proc.pid)
            proc.proc.wait(10)


@dataclass(frozen=True)
class World:
    """A scenario's app and worker environment on the private node and its own database."""

    app: Hutch
    env: dict[str, str]
    amqp_url: str
    prefix: str
    db: str


@pytest.fixture
def fault_world(private_rabbit, fresh_postgres_url, private_topology_prefix) -> Iterator[World]:
    url, prefix = private_rabbit.url, private_topology_prefix
    app = register_fault_tasks(make_app(url, fresh_postgres_url, topology_prefix=prefix))
    try:
        yield World(app, worker_env(url, fresh_postgres_url, prefix), url, prefix,
                    fresh_postgres_url)
    finally:
        app.close()
