"""An Executor on memory:// + SQLite (or a given database), and deliveries handed to it as a consumer would."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from apps.tasks import make_app
from hutch.brokers.factory import open_broker
from hutch.results.store import open_store
from hutch.worker.chords import ChordKeeper
from hutch.worker.executor import Executor
from hutch.worker.recorder import Recorder


class FakeDelivery:
    """A delivery as the consumer hands it over, recording how it was settled."""

    def __init__(self, wire, queue="celery", redelivered=False, stale=False):
        self.wire, self.queue, self.redelivered = wire, queue, redelivered
        self.exchange, self.routing_key = "", queue
        self.stale = stale
        self.settled = None

    def ack(self):
        self.settled = "ack"

    def reject(self, requeue=False):
        self.settled = "requeue" if requeue else "dead"


@contextlib.contextmanager
def executor_world(tmp_path: Path, backend: str | None = None,
                   **settings: Any) -> Iterator[tuple[Any, Any, Any, Executor]]:
    """(app, store, broker, executor) with a running recorder, stopped afterwards;
    results in ``backend``, a SQLite file of its own by default."""
    app = make_app(f"memory://{uuid.uuid4().hex}",
                   backend or f"sqlite:///{tmp_path / 'r.sqlite'}", **settings)
    store, broker = open_store(app.conf), open_broker(app.conf)
    recorder = Recorder(store, broker, app.conf.result_batch_max,
                        chords=ChordKeeper(app.conf, app.tasks, shard="test-worker"))
    recorder.start()
    try:
        yield app, store, broker, Executor(app.conf, app.tasks, recorder, "test-worker",
                                           app_name=app.main)
    finally:
        recorder.stop()
        store.close()
        app.close()
