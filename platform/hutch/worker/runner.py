"""Pick the process layout for a pool: a prefork supervisor, or one worker process."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..beat.service import Beat
from ..brokers.factory import open_broker
from ..config import parse_autoscale
from ..logs import get_logger
from ..results.store import open_store
from ..routing import check_known_queue
from .prefork import PreforkSupervisor
from .process import WorkerProcess

if TYPE_CHECKING:
    from ..beat.sender import ClientFactory
    from ..config import Settings
    from .wiring import Wiring

log = get_logger("hutch.worker")


def run_worker(wiring: Wiring, queues: Sequence[str] | None = None, pool: str | None = None,
               concurrency: int | None = None, nodename: str | None = None,
               beat: ClientFactory | None = None) -> int:
    """Run a worker in the foreground until SIGTERM; returns the exit code.

    ``beat`` (``-B``), the app's shared client, embeds a beat that sends through it:
    in a child process of its own under the prefork supervisor (forking a process
    that runs a beat thread would copy its locks mid-use), in a thread of the worker
    process for the other pools.
    """
    conf = wiring.conf
    pool = pool or conf.worker_pool
    concurrency = concurrency or conf.worker_concurrency
    queues = list(queues or [conf.task_default_queue])
    for queue in queues:  # task_create_missing_queues off: only the configured ones
        check_known_queue(queue, conf.task_queues, conf.task_default_queue,
                          conf.task_create_missing_queues)
    autoscale = parse_autoscale(conf.worker_autoscale) if conf.worker_autoscale else None
    if autoscale and pool not in ("prefork", "threads"):
        log.warning("autoscale is for the prefork and threads pools: this pool keeps its "
                    "size", pool=pool, concurrency=concurrency)
    _warn_unrecycled(conf, pool)
    if pool == "prefork":
        check_first(conf, queues)
        sidecar = None
        if beat is not None:
            # here, so a bad beat_schedule stops the worker at once
            Beat(conf, beat).sync_config()
            beat().close()  # the supervisor keeps no connection; the beat child opens its own
            sidecar = lambda: Beat(conf, beat).run(sync=False)  # noqa: E731
        if autoscale:
            concurrency = autoscale[1]  # as Celery: start with MIN children
        return PreforkSupervisor(wiring, queues, concurrency, nodename, sidecar=sidecar,
                                 autoscale=autoscale).run()
    embedded = Beat(conf, beat).start() if beat is not None else None
    try:
        return WorkerProcess(wiring, queues, pool, concurrency, nodename).run()
    finally:
        if embedded is not None:
            embedded.stop()


def check_first(conf: Settings, queues: Sequence[str]) -> None:
    """Reach the result store and declare the routes before forking, so an unreachable
    or un-migrated database, or a refused declaration (a queue whose arguments differ
    from the settings), stops the worker with one clear error (the CLI exits 2), as it
    stops a threads worker, instead of every child failing and being replaced."""
    with open_store(conf) as store:
        store.ping()
    broker = open_broker(conf)
    try:
        broker.declare(queues)
    finally:
        broker.close()


def _warn_unrecycled(conf: Settings, pool: str) -> None:
    """Child recycling needs children: other pools run, and say they ignore it (as
    Celery, whose other pools ignore it silently; a settings file may serve workers
    of several pools, so it is no error)."""
    for name in ("worker_max_tasks_per_child", "worker_max_memory_per_child"):
        if pool != "prefork" and getattr(conf, name) is not None:
            log.warning(f"{name} recycles prefork children: the {pool} pool ignores it",
                        pool=pool)
