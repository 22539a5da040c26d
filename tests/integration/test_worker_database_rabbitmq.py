"""A worker whose result database is unreachable or not migrated refuses to start with
one line and exit code 2, whatever its pool (issue #11): a prefork supervisor checks
the store before forking, instead of replacing failing children for ever."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hutch.results.migrate import heads, upgrade
from support.processes import TESTS_DIR, worker_env
from support.servers import free_port

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def _start_worker(env: dict[str, str], pool: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hutch", "-A", "apps.env_app", "worker", "-P", pool, "-c", "2"],
        env=env, capture_output=True, text=True, timeout=60, cwd=TESTS_DIR.parent)


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_worker_with_an_unreachable_database_exits_2_with_one_line(amqp_url,
                                                                     topology_prefix, pool):
    unreachable = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/hutch"
    out = _start_worker(worker_env(amqp_url, unreachable, topology_prefix), pool)
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr[-3000:]
    assert lines[0].startswith("error: result backend postgresql://postgres:***@")
    assert "connect failed" in lines[0] and "secret" not in lines[0]


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_worker_on_an_unmigrated_database_exits_2_saying_to_upgrade(amqp_url,
                                                                      empty_postgres_url,
                                                                      topology_prefix, pool):
    out = _start_worker(worker_env(amqp_url, empty_postgres_url, topology_prefix), pool)
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr[-3000:]
    assert "the schema was never migrated" in lines[0]
    assert lines[0].endswith("run `hutch db upgrade`")


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_a_worker_on_a_database_behind_this_hutch_exits_2_naming_both_revisions(
        amqp_url, empty_postgres_url, topology_prefix, pool):
    upgrade(empty_postgres_url, "0005")
    out = _start_worker(worker_env(amqp_url, empty_postgres_url, topology_prefix), pool)
    assert out.returncode == 2, out.stderr[-3000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr[-3000:]
    assert f"the schema is at 0005, this hutch needs {heads()[0]}" in lines[0]
    assert lines[0].endswith("run `hutch db upgrade`")
