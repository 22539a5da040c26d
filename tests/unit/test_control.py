"""Revocation commands and their checks, and revocation end to end on memory://."""

from __future__ import annotations

import signal
import uuid

import pytest

from apps.tasks import make_app
from hutch.client.revocation import task_ids
from hutch.errors import ConfigurationError, TaskRevokedError
from hutch.messages import RevokeCommand, signal_name
from support.waiting import eventually
from support.workers import running_worker


@pytest.fixture
def app(tmp_path):
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}")
    yield app
    app.close()


@pytest.mark.parametrize("given", ["SIGKILL", "KILL", "kill", 9, signal.SIGKILL])
def test_signal_names(given):
    assert signal_name(given) == "SIGKILL"


@pytest.mark.parametrize("given", ["SIGNOPE", "", 999, "9x"])
def test_unknown_signals_are_refused(given):
    with pytest.raises(ConfigurationError, match="signal"):
        signal_name(given)


def test_task_ids_are_checked_and_deduplicated():
    assert task_ids("a") == ("a",)
    assert task_ids(["a", "b", "a"]) == ("a", "b")
    for bad in ([], [""], ["x" * 156], [None]):
        with pytest.raises(ConfigurationError, match="task_id"):
            task_ids(bad)


def test_command_round_trip_and_garbage_is_ignored():
    command = RevokeCommand(("a", "b"), terminate=True, signal="SIGKILL")
    assert RevokeCommand.decode(command.encode()) == command
    assert RevokeCommand.decode(b"not json") is None
    assert RevokeCommand.decode(b'{"command": "shutdown"}') is None
    assert RevokeCommand.decode(b'{"command": "revoke", "ids": ["a"], "signal": "NOPE"}') is None


def test_revoke_before_and_while_a_worker_runs(app, tmp_path):
    marker = tmp_path / "ran"
    early = app.tasks["tests.sleep"].apply_async((0, str(marker)), countdown=0.5)
    early.revoke()  # before any worker exists: stored, then loaded by the worker
    with running_worker(app) as worker:
        late = app.tasks["tests.sleep"].apply_async((0, str(marker)), countdown=0.5)
        app.control.revoke(late.id)  # a running worker hears the broadcast
        assert late.id in worker._executor.revoked and early.id in worker._executor.revoked
        probe = app.tasks["tests.sleep"].apply_async((0, str(marker)), countdown=1)
        assert probe.get(timeout=10) == 0
    for r in (early, late):
        with pytest.raises(TaskRevokedError):
            r.get(timeout=1)
    assert marker.read_text().count("\n") == 1


def test_revoke_stores_a_row_for_an_unknown_id_and_keeps_finished_rows(app):
    with running_worker(app):
        done = app.tasks["tests.add"].delay(1, 1)
        assert done.get(timeout=10) == 2
    assert app.control.revoke(["never-sent", done.id]) == ["never-sent"]
    assert app.AsyncResult("never-sent").state == "REVOKED"
    assert done.state == "SUCCESS"
    assert eventually(lambda: {"never-sent", done.id} <= app.client().store.revoked_ids())
