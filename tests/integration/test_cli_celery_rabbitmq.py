"""Celery's ``call``, ``list bindings`` and ``purge`` as ``hutch`` subprocesses against the
real RabbitMQ and PostgreSQL, on a private topology prefix."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hutch.results.records import PENDING
from support.processes import TESTS_DIR
from support.rabbit import queue_counts

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture
def run(env):
    """``run(*args, stdin="")``: ``hutch -A apps.env_app *args`` with a ``reports`` route
    configured besides the default ``celery`` one."""
    env = {**env, "HUTCH_TASK_QUEUES": json.dumps({"reports": {}})}

    def hutch(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hutch", "-A", "apps.env_app", *args],
                              env=env, input=stdin, capture_output=True, text=True,
                              timeout=120, cwd=TESTS_DIR)

    return hutch


def rabbit_bindings(prefix: str) -> set[tuple[str, str, str]]:
    """(exchange, queue, routing key) of every binding RabbitMQ has under ``prefix``."""
    out = subprocess.run(["rabbitmqctl", "-q", "list_bindings", "source_name",
                          "destination_name", "routing_key", "--no-table-headers"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return {(s, d, k) for s, d, k in (line.split("\t") for line in out.splitlines()
                                      if line.count("\t") == 2)
            if s.startswith(prefix + ".")}


def test_call_sends_and_purge_empties_the_apps_queues(run, app, topology_prefix):
    sent = run("call", "tests.add", "--args", "[2, 3]")
    elsewhere = run("call", "only.in.workers", "-k", '{"n": 1}', "--queue", "reports")
    assert sent.returncode == 0 and elsewhere.returncode == 0, sent.stderr + elsewhere.stderr
    rows = [app.client().store.get(p.stdout.strip()) for p in (sent, elsewhere)]
    assert [(r.state, r.name, r.queue) for r in rows] == [
        (PENDING, "tests.add", "celery"), (PENDING, "only.in.workers", "reports")]
    work, reports = f"{topology_prefix}.celery", f"{topology_prefix}.reports"
    assert {q: queue_counts(topology_prefix)[q] for q in (work, reports)} == {
        work: (1, 0), reports: (1, 0)}

    asked = run("purge", stdin="n\n")
    assert asked.returncode == 2 and asked.stderr == "aborted\n"
    assert asked.stdout.splitlines()[:2] == ["celery: 1 message(s)", "reports: 1 message(s)"]
    assert queue_counts(topology_prefix)[work] == (1, 0)

    one = run("purge", "-f", "-Q", "reports")
    assert (one.returncode, one.stdout) == (0, "purged 1 message from 1 queue\n")
    every = run("purge", "-f")
    assert (every.returncode, every.stdout) == (0, "purged 1 message from 2 queues\n")
    counts = queue_counts(topology_prefix)
    assert (counts[work], counts[reports]) == ((0, 0), (0, 0))


def test_list_bindings_names_what_rabbitmq_has_bound(run, topology_prefix):
    assert run("call", "tests.add", "--args", "[1, 1]", "--queue", "reports").returncode == 0
    assert run("call", "tests.add", "--args", "[1, 1]").returncode == 0
    listed = run("list", "bindings", "--json")
    assert listed.returncode == 0, listed.stderr
    routes = json.loads(listed.stdout)
    assert [r["route"] for r in routes] == ["celery", "reports"]
    bound = rabbit_bindings(topology_prefix)
    for r in routes:
        assert (r["exchange"], r["queue"], r["routing_key"]) in bound
        assert (r["dead_letter_exchange"], r["dead_letter_queue"], r["routing_key"]) in bound
    assert routes[1]["dead_letter_queue"] == f"{topology_prefix}.reports.dead"
