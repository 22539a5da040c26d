"""``task_annotations``: task options set from the settings, over ``@app.task``'s own.

Celery's way to change a task without editing it: ``{"proj.tasks.add": {"rate_limit":
"10/s"}}``, ``{"*": {...}}`` for every task, a list of such mappings, or objects with
``annotate(task) -> dict | None`` (and optionally ``annotate_any() -> dict | None``).
In each list the first answer for the task's own name and the first for ``"*"`` are
used; the task's own wins where both set an option (Celery lets ``"*"`` win, which
reads backwards: a documented difference).

Annotations are applied when a task is registered and to every task when the app is
finalized (``hutch -A``, the worker), each time from the options the task declared,
so applying twice changes nothing. Every option is checked as ``@app.task`` checks
it; method annotations (Celery's ``"@on_failure"`` keys) are refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from weakref import WeakKeyDictionary

from .call_options import check_time_limits
from .errors import ConfigurationError
from .tasks import OPTION_NAMES, Task, TaskOptions, build_options

ANNOTATABLE = tuple(sorted(OPTION_NAMES - {"name", "bind"}))
"""The task options an annotation may set: all of ``@app.task``'s but the name and
``bind``, which change what the task is rather than how it runs."""

_DECLARED: WeakKeyDictionary[Task, TaskOptions] = WeakKeyDictionary()
"""Each annotated task's options as declared, so annotating again starts from them."""


def annotate(task: Task, annotations: Any) -> None:
    """Set ``task.options`` to its declared options with ``annotations`` (the setting's
    value) applied; ConfigurationError naming the task and option for a bad one."""
    declared = _DECLARED.setdefault(task, task.options)
    values = matching(annotations, task)
    if not values:
        task.options = declared
        return
    where = f"task_annotations for {task.name}"
    unknown = sorted(key for key in values if key not in ANNOTATABLE)
    if unknown:
        methods = "; method annotations ('@...') are not supported: use the task's hooks " \
            "or hutch.signals" if any(key.startswith("@") for key in unknown) else ""
        raise ConfigurationError(f"{where}: cannot set {', '.join(unknown)}; an annotation "
                                 f"may set {', '.join(ANNOTATABLE)}{methods}")
    try:
        checked = build_options(getattr(task, "fn", task.run), None,
                                {"name": task.name, **values})
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    options = replace(declared, **{key: getattr(checked, key) for key in values})
    check_time_limits(where, options.soft_time_limit, options.time_limit)
    task.options = options


def matching(annotations: Any, task: Task) -> dict[str, Any]:
    """The options ``annotations`` set for ``task``: the first ``"*"`` answer, then the
    first answer for the task itself over it."""
    own: Mapping[str, Any] | None = None
    anyone: Mapping[str, Any] | None = None
    for item in annotations if isinstance(annotations, (list, tuple)) else [annotations]:
        if item is None:
            continue
        if isinstance(item, Mapping):
            mine, every = item.get(task.name), item.get("*")
        else:
            mine = item.annotate(task)
            every = item.annotate_any() if hasattr(item, "annotate_any") else None
        own = own if own is not None else mine
        anyone = anyone if anyone is not None else every
    return {**(anyone or {}), **(own or {})}
