"""What a worker takes from the app whose tasks it runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Settings
    from ..tasks import TaskRegistry


@dataclass(frozen=True)
class Wiring:
    """A worker's settings, the tasks it runs and the name of the app they come from
    (a message for any other task is refused with a NotRegistered error naming it).

    One value rather than three arguments because it travels unchanged from the CLI
    through :func:`~hutch.worker.runner.run_worker` and the prefork supervisor into
    every worker process, which hands the pieces to its executor and chord keeper.
    The app object itself (its client, control and schedules) stays with the CLI
    that loaded it: ``Wiring(app.conf, app.tasks, app.main)``."""

    conf: Settings
    tasks: TaskRegistry
    app_name: str | None = None
