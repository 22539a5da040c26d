"""The private servers themselves: they survive what the fault scenarios do to them, and
removing them leaves nothing running or registered."""

from __future__ import annotations

import pytest

from support.servers import (
    NAME_PREFIX,
    RABBIT_ROOTS,
    PrivatePostgres,
    PrivateRabbit,
    pid_alive,
    run_tag,
)

pytestmark = pytest.mark.faults


def test_private_rabbit_kill_restart_and_removal_leave_nothing_behind():
    root = RABBIT_ROOTS / f"{NAME_PREFIX}-rabbit-{run_tag()}"
    root.mkdir(mode=0o700)
    node = PrivateRabbit(root)
    try:
        node.start()
        assert node.accepting() and node.port != 5672
        first_pid = node.beam_pid
        node.kill()
        assert not node.accepting() and not pid_alive(first_pid)
        node.start()
        assert node.accepting() and node.beam_pid != first_pid
    finally:
        node.remove()
    assert not pid_alive(node.beam_pid)
    assert not root.exists()


def test_private_postgres_crash_restart_and_removal_leave_nothing_behind():
    cluster = PrivatePostgres(f"{NAME_PREFIX}_{run_tag()}")
    try:
        cluster.create()
        url = cluster.create_database()
        cluster.crash()
        assert not cluster.accepting()
        cluster.start()
        cluster.drop_database(url)
        assert cluster.port != 5432
    finally:
        cluster.remove()
    assert not cluster.exists()
