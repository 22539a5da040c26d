"""Pick the process layout for a pool: a prefork supervisor, or one worker process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..beat.service import Beat
from ..brokers.factory import open_broker
from ..results.store import open_store
from .prefork import PreforkSupervisor
from .process import WorkerProcess

if TYPE_CHECKING:
    from ..app import Hutch


def run_worker(app: Hutch, queues: Sequence[str] | None = None, pool: str | None = None,
               concurrency: int | None = None, nodename: str | None = None,
               beat: bool = False) -> int:
    """Run a worker in the foreground until SIGTERM; returns the exit code.

    ``beat=True`` (``-B``) embeds a beat: in a child process of its own under the
    prefork supervisor (forking a process that runs a beat thread would copy its
    locks mid-use), in a thread of the worker process for the other pools.
    """
    pool = pool or app.conf.worker_pool
    concurrency = concurrency or app.conf.worker_concurrency
    queues = list(queues or [app.conf.task_default_queue])
    if pool == "prefork":
        check_first(app, queues)
        sidecar = None
        if beat:
            Beat(app).sync_config()  # here, so a bad beat_schedule stops the worker at once
            app.close()  # the supervisor keeps no connection; the beat child opens its own
            sidecar = lambda: Beat(app).run(sync=False)  # noqa: E731
        return PreforkSupervisor(app, queues, concurrency, nodename, sidecar=sidecar).run()
    embedded = Beat(app).start() if beat else None
    try:
        return WorkerProcess(app, queues, pool, concurrency, nodename).run()
    finally:
        if embedded is not None:
            embedded.stop()


def check_first(app: Hutch, queues: Sequence[str]) -> None:
    """Reach the result store and declare the routes before forking, so an unreachable
    or un-migrated database, or a refused declaration (a queue whose arguments differ
    from the settings), stops the worker with one clear error (the CLI exits 2), as it
    stops a threads worker, instead of every child failing and being replaced."""
    with open_store(app.conf) as store:
        store.count()
    broker = open_broker(app.conf)
    try:
        broker.declare(queues)
    finally:
        broker.close()
