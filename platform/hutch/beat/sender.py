"""Turn a claimed run into a task message and publish it, confirmed.

The run's task id is chosen *before* the claim and stored in it, and the
message is published with that id and the schedule's name (the
``schedule_name`` header, kept in ``hutch_tasks.schedule_name``). A run whose
publish was never confirmed (its beat died between the claim's commit and the
broker's confirm) is found by the next active beat and published again with
the same id, marked ``republished`` (hutch.messages): a worker acknowledges such a copy
without running it once that id has been received. Before that it is re-claimed in a
transaction that renews the lease, so only the active beat, and one beat, does it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ConfigurationError, QueueNodeDown
from ..logs import get_logger
from ..messages import TaskMessage
from ..schedules.entry import Schedule
from .store import BeatStore, Run

if TYPE_CHECKING:
    from ..client.sync import Client

log = get_logger("hutch.beat")

ClientFactory = Callable[[], "Client"]
"""The app's shared client (``app.client``), asked for when it is used: it opens on
first use, and a beat about to fork closes it, so every use asks again."""


class Sender:
    def __init__(self, client: ClientFactory, store: BeatStore) -> None:
        self.client = client
        self.store = store
        self.confirmed = 0
        """Publishes RabbitMQ confirmed so far (beat steps down when none come)."""

    def message(self, entry: Schedule, task_id: str) -> TaskMessage:
        """The run's message; ConfigurationError (naming the column) if the row cannot be
        sent as it stands."""
        entry.check()
        options = {**entry.options, "task_id": task_id, "schedule_name": entry.name}
        return self.client().message(entry.task, entry.args, dict(entry.kwargs), **options)

    def check(self, entry: Schedule) -> None:
        """Refuse now what beat could not send later (say a ``priority`` for a queue
        without a maximum priority): ConfigurationError naming the field."""
        self.message(entry, "check")

    def send(self, message: TaskMessage, now: dt.datetime) -> None:
        """Publish with a confirm, then mark the run sent. Raises on a broker failure
        (the run stays unsent and is published again by the unsent-run sweep)."""
        self.client().send([message])
        self.confirmed += 1
        self.store.mark_sent([message.id], now)

    def resend(self, runs: list[Run], entries: dict[str, Schedule], now: dt.datetime,
               reclaim: Callable[[Run], bool]) -> None:
        """Publish runs claimed but never confirmed, unless their task row shows the first
        publish reached the broker (the PENDING row is written only after the confirm).
        Each is first re-claimed (``reclaim``: False if another beat did, raises NotLeader
        without the lease), so one beat, the active one, publishes it again."""
        arrived = self.store.task_rows([r.task_id for r in runs]) if runs else set()
        self.store.mark_sent([r.task_id for r in runs if r.task_id in arrived], now)
        node_down: set[str] = set()  # schedules whose queue's node is down: next round
        for run in runs:
            entry = entries.get(run.schedule_name)
            if run.task_id in arrived or run.schedule_name in node_down:
                continue
            if entry is None:
                log.warning("unsent run of a removed schedule dropped",
                            schedule=run.schedule_name, task_id=run.task_id)
                self.store.mark_sent([run.task_id], now)
                continue
            try:
                message = self.message(entry, run.task_id)
            except ConfigurationError as exc:
                log.error("unsent run dropped: its schedule can no longer be sent",
                          schedule=run.schedule_name, task_id=run.task_id, error=str(exc))
                self.store.mark_sent([run.task_id], now)
                continue
            if not reclaim(run):
                continue
            try:
                self.client().send([message], retry=False, as_republished=True)
            except QueueNodeDown as exc:  # told once by the publisher; no node can help
                log.debug("unsent run not published again yet: its queue's node is down",
                          schedule=run.schedule_name, task_id=run.task_id, error=str(exc))
                node_down.add(run.schedule_name)
                continue  # the others (and the due runs after them) are not held up
            self.confirmed += 1
            self.store.mark_sent([run.task_id], now)
            log.warning("run claimed by a beat that died before the broker confirmed it: "
                        "published again with the same task id", schedule=run.schedule_name,
                        due_at=run.due_at.isoformat(), task_id=run.task_id)
