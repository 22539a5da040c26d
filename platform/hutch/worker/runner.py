"""Pick the process layout for a pool: a prefork supervisor, or one worker process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .prefork import PreforkSupervisor
from .process import WorkerProcess

if TYPE_CHECKING:
    from ..app import Hutch


def run_worker(app: Hutch, queues: Sequence[str] | None = None, pool: str | None = None,
               concurrency: int | None = None, nodename: str | None = None) -> int:
    """Run a worker in the foreground until SIGTERM; returns the exit code."""
    pool = pool or app.conf.worker_pool
    concurrency = concurrency or app.conf.worker_concurrency
    queues = list(queues or [app.conf.task_default_queue])
    if pool == "prefork":
        return PreforkSupervisor(app, queues, concurrency, nodename).run()
    return WorkerProcess(app, queues, pool, concurrency, nodename).run()
