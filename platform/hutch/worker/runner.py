"""Pick the process layout for a pool: a prefork supervisor, or one worker process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..connections import open_broker
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
        declare_first(app, queues)
        return PreforkSupervisor(app, queues, concurrency, nodename).run()
    return WorkerProcess(app, queues, pool, concurrency, nodename).run()


def declare_first(app: Hutch, queues: Sequence[str]) -> None:
    """Declare the routes before forking, so a refused declaration (a queue whose
    arguments differ from the settings) stops the worker with one clear error instead
    of every child failing and being replaced, over and over."""
    broker = open_broker(app.conf)
    try:
        broker.declare(queues)
    finally:
        broker.close()
