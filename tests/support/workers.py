"""Run a worker inside the test process (threads/asyncio/solo pools) and stop it after."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence

from hutch import Hutch
from hutch.worker.process import WorkerProcess
from hutch.worker.wiring import Wiring


@contextlib.contextmanager
def running_worker(app: Hutch, queues: Sequence[str] | None = None, pool: str = "threads",
                   concurrency: int = 2) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(Wiring(app.conf, app.tasks, app.main), queues, pool=pool,
                           concurrency=concurrency)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            worker.run(install_signals=False)
        except BaseException as exc:  # surfaced in the test below
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while not worker.wait_started(0.1):
        if errors:
            raise errors[0]
        if not thread.is_alive():
            raise RuntimeError("worker thread died before starting")
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(30)
        assert not thread.is_alive(), "worker did not stop within 30 s"
        if errors:
            raise errors[0]
