"""pytest fixtures for projects that use hutch, like Celery's ``celery_app``/``celery_worker``.

Enable them in a ``conftest.py`` with ``pytest_plugins = ["hutch.testing"]``:

- ``hutch_config``: the settings of ``hutch_app`` (a dict). By default none, so the
  app uses a private ``memory://`` broker and a private SQLite file; override the
  fixture to change anything, e.g. ``{"broker_url": "amqp://...", "result_backend":
  "postgresql://...", "topology_prefix": "test1"}`` for the real servers.
- ``hutch_includes``: modules imported once ``hutch_app`` is the current app (their
  tasks are registered on it, see :func:`adopt_tasks`).
- ``hutch_worker_parameters``: ``queues``, ``pool`` (threads, asyncio or solo)
  and ``concurrency`` of ``hutch_worker``.
- ``hutch_app``: the app, current for the test and closed after it.
- ``hutch_worker``: a real worker consuming for ``hutch_app`` in a thread of the test
  process for the whole test, stopped warm after it (its running tasks finish).

Tasks the test defines with ``@hutch_app.task`` exist before the worker runs them
because the worker reads the app's registry at each delivery, so a test may define
its tasks after asking for ``hutch_worker``.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import uuid
from collections.abc import Iterator, Sequence
from copy import copy
from pathlib import Path
from typing import Any

import pytest

from .app import Hutch
from .current import set_current_app
from .errors import ConfigurationError
from .tasks import Task
from .worker.process import WorkerProcess
from .worker.wiring import Wiring

APP_NAME = "hutch_test"
THREAD_POOLS = ("threads", "asyncio", "solo")
"""The pools a worker can run with in a thread of the test process (solo: one thread)."""
STOP_TIMEOUT = 30.0
"""Seconds ``hutch_worker`` waits for its worker to stop after the test."""


@pytest.fixture
def hutch_config() -> dict[str, Any]:
    """Settings for ``hutch_app``; override this fixture in a conftest or test module."""
    return {}


@pytest.fixture
def hutch_includes() -> Sequence[str]:
    """Modules to import into ``hutch_app``; override this fixture to list them."""
    return ()


@pytest.fixture
def hutch_worker_parameters() -> dict[str, Any]:
    """``queues`` (default: the app's default queue), ``pool`` and ``concurrency`` of
    ``hutch_worker``; override this fixture to change them."""
    return {"pool": "threads", "concurrency": 2}


@pytest.fixture
def hutch_app(hutch_config: dict[str, Any], hutch_includes: Sequence[str],
              tmp_path: Path) -> Iterator[Hutch]:
    """An app on ``hutch_config``, by default a private memory:// broker and SQLite file."""
    app = make_test_app(hutch_config, hutch_includes, tmp_path)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def hutch_worker(hutch_app: Hutch, hutch_worker_parameters: dict[str, Any]
                 ) -> Iterator[WorkerProcess]:
    """A worker consuming for ``hutch_app`` in a thread, from before the test to after it."""
    with running_worker(hutch_app, **hutch_worker_parameters) as worker:
        yield worker


def make_test_app(config: dict[str, Any], includes: Sequence[str] = (),
                  directory: Path | None = None) -> Hutch:
    """``hutch_app``'s app, for code that builds one without the fixture: ``config`` as
    settings (``broker``/``backend`` too), a private memory:// broker and a SQLite file in
    ``directory`` unless it names others; then ``includes`` imported into it."""
    settings = dict(config)
    broker = settings.pop("broker", None) or settings.pop("broker_url", None) \
        or f"memory://{uuid.uuid4().hex}"
    backend = settings.pop("backend", None) or settings.pop("result_backend", None)
    if backend is None:
        if directory is None:
            raise ConfigurationError("hutch.testing: give a result_backend or a directory "
                                     "for the SQLite file")
        backend = f"sqlite:///{directory / 'hutch.sqlite'}"
    app = Hutch(APP_NAME, broker=broker, backend=backend, **settings)
    for name in includes:
        adopt_tasks(app, importlib.import_module(name))
    set_current_app(app)  # an included module may have made an app of its own
    return app


def adopt_tasks(app: Hutch, module: object) -> None:
    """Register on ``app`` the tasks ``module`` defines at its top level on another app
    (``@other_app.task``), under the same names and options; tasks that bind to the
    current app (defined while ``app`` is current) are on it already. Run them through
    ``app.tasks[name]``: the module's own names still send through its app."""
    for value in vars(module).values():
        if isinstance(value, Task) and value.app is not app and value.name not in app.tasks:
            adopted = copy(value)
            adopted.app = app
            app.tasks.add(adopted)


@contextlib.contextmanager
def running_worker(app: Hutch, queues: Sequence[str] | None = None, pool: str = "threads",
                   concurrency: int = 2) -> Iterator[WorkerProcess]:
    """A worker for ``app`` running in a thread until the ``with`` block ends, then
    stopped warm (cold after :data:`STOP_TIMEOUT`); an error that stopped it is raised."""
    if pool not in THREAD_POOLS:
        raise ConfigurationError(f"hutch_worker: pool {pool!r} cannot run in a thread of the "
                                 "test process: use 'threads', 'asyncio' or 'solo'")
    worker = WorkerProcess(Wiring(app.conf, app.tasks, app.main), queues, pool=pool,
                           concurrency=concurrency)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(install_signals=False)
        except BaseException as exc:  # noqa: BLE001 - raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run, name="hutch-test-worker", daemon=True)
    thread.start()
    while not worker.wait_started(0.1):
        if errors:
            raise errors[0]
        if not thread.is_alive():
            raise ConfigurationError("hutch_worker: the worker stopped before consuming")
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(STOP_TIMEOUT)
        if thread.is_alive():
            worker.stop(cold=True)
            thread.join(STOP_TIMEOUT)
        if errors:
            raise errors[0]
