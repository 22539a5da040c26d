"""hutch.testing's pytest fixtures (enabled for this suite in tests/conftest.py, as a project
would with ``pytest_plugins = ["hutch.testing"]``): a private app, a worker thread that
runs its tasks for the test's duration, and the fixtures that change them."""

from __future__ import annotations

import pytest

from hutch import Hutch, current
from hutch.errors import ConfigurationError
from hutch.testing import make_test_app, running_worker


def test_the_app_is_private_and_current(hutch_app, tmp_path):
    assert isinstance(hutch_app, Hutch) and current.current_app() is hutch_app
    assert hutch_app.conf.broker_url.startswith("memory://")
    assert hutch_app.conf.result_backend == f"sqlite:///{tmp_path / 'hutch.sqlite'}"
    assert hutch_app.conf.task_always_eager is False


def test_the_worker_runs_the_tests_own_tasks(hutch_app, hutch_worker):
    @hutch_app.task(name="fixtures.mul", bind=True)
    def mul(self, x, y):
        return {"value": x * y, "hostname": self.request.hostname}

    r = mul.delay(6, 7)
    assert r.get(timeout=10) == {"value": 42, "hostname": hutch_worker.name}
    row = hutch_app.client().store.get(r.id)
    assert row.state == "SUCCESS" and row.worker == hutch_worker.name

    @hutch_app.task(name="fixtures.add")
    def add(x, y):
        return x + y

    assert (add.s(1, 2) | add.s(3)).delay().get(timeout=10) == 6


@pytest.mark.parametrize("hutch_config", [{"task_default_queue": "work",
                                           "task_serializer": "msgpack"}])
def test_hutch_config_sets_the_apps_settings(hutch_app, hutch_worker):
    assert hutch_app.conf.task_default_queue == "work"
    assert hutch_worker.queues == ["work"]

    @hutch_app.task(name="fixtures.echo")
    def echo(value):
        return value

    assert echo.delay(b"bytes").get(timeout=10) == b"bytes"  # msgpack keeps bytes


@pytest.mark.parametrize("hutch_worker_parameters", [{"pool": "asyncio", "concurrency": 3}])
def test_hutch_worker_parameters_choose_the_pool(hutch_app, hutch_worker):
    @hutch_app.task(name="fixtures.coro")
    async def coro(x):
        return x + 1

    assert coro.delay(1).get(timeout=10) == 2
    assert (hutch_worker.pool_kind, hutch_worker.concurrency) == ("asyncio", 3)


@pytest.mark.parametrize("hutch_includes", [["apps.included"]])
def test_hutch_includes_imports_modules_into_the_app(hutch_app, hutch_worker):
    assert current.current_app() is hutch_app  # the module's own app did not stay current
    r = hutch_app.tasks["included.double"].delay(21)
    assert r.get(timeout=10) == {"value": 42, "app": "hutch_test"}


@pytest.mark.parametrize("hutch_config", [{"task_always_eager": True}])
def test_with_task_always_eager_no_worker_is_needed(hutch_app):
    @hutch_app.task(name="fixtures.add")
    def add(x, y):
        return x + y

    assert add.delay(1, 2).get() == 3


def test_the_worker_stops_after_its_block_and_refuses_other_pools(tmp_path):
    app = make_test_app({}, directory=tmp_path)
    try:
        with running_worker(app) as worker:
            assert worker.wait_started(0)
        assert worker._ended.is_set()
        with pytest.raises(ConfigurationError, match="'prefork' cannot run in a thread"):
            with running_worker(app, pool="prefork"):
                pass
        with pytest.raises(ConfigurationError, match="result_backend or a directory"):
            make_test_app({})
    finally:
        app.close()
