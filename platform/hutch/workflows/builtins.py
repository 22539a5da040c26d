"""Built-in tasks every app registers: ``hutch.map``, ``hutch.starmap``, ``hutch.collect``.

``task.map(items)`` and ``task.starmap(items)`` run as one task on one worker
(as in Celery): the worker calls the named task's function once per item, in
this process, and the list of return values is the result. ``chunks`` is a
group of starmap tasks. ``hutch.collect`` ends a chord whose only job is to
gather a group's results into one list (a chain ending in a group, used as a
chord header member).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..messages import SignatureDict
from .canvas import COLLECT_TASK, MAP_TASK, STARMAP_TASK, Signature

if TYPE_CHECKING:
    from ..app import Hutch


def register_builtins(app: Hutch) -> None:
    def task_of(data: SignatureDict) -> Any:
        return app.get_task(Signature.from_dict(data, app).task)

    @app.task(name=MAP_TASK)
    def xmap(task: SignatureDict, it: list[Any]) -> list[Any]:
        fn = task_of(task)
        return [fn(item) for item in it]

    @app.task(name=STARMAP_TASK)
    def xstarmap(task: SignatureDict, it: list[Any]) -> list[Any]:
        fn = task_of(task)
        return [fn(*item) for item in it]

    @app.task(name=COLLECT_TASK)
    def collect(results: list[Any]) -> list[Any]:
        return results
