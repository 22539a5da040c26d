"""The control commands that change a running worker process (``hutch control ...``,
``app.control.rate_limit()`` ...), by Celery's names and with Celery's replies.

They arrive as every control request does (worker/remote.py) and each process acts
for itself: every prefork child changes its own rate limits (keeping its 1/N share),
time limits, consumer and task events, and answers; the requester merges the answers
per worker (hutch.ops.control). A bad argument raises here and becomes an error
reply; the process goes on unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..brokers.base import ConsumerHandle
    from .node import Command, Node


def _task_name(node: Node, command: str, arguments: dict[str, Any]) -> str:
    name = arguments.get("task_name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{command}: 'task_name' must be a task name")
    if node.executor.tasks.get(name) is None:
        raise ValueError(f"{command}: unknown task {name!r}")
    return name


def rate_limit(node: Node, arguments: dict[str, Any]) -> Any:
    """The task's new rate limit in this process (``"10/m"``; None, 0 or "" lifts
    it); tasks already waiting for a token keep their turn."""
    name = _task_name(node, "rate_limit", arguments)
    if "rate_limit" not in arguments:
        raise ValueError("rate_limit: 'rate_limit' is missing")
    rate = node.executor.rate_limits.change(name, arguments["rate_limit"])
    return {"ok": "new rate limit set successfully" if rate
            else "rate limit disabled successfully"}


def time_limit(node: Node, arguments: dict[str, Any]) -> Any:
    """The task's soft and hard limits (seconds, None: none) for the tasks this
    process starts from now on, replacing the limits their messages carry."""
    name = _task_name(node, "time_limit", arguments)
    node.executor.time_limits.set(name, arguments.get("soft"), arguments.get("hard"))
    return {"ok": "time limits set successfully"}


def _queue(command: str, arguments: dict[str, Any]) -> str:
    queue = arguments.get("queue")
    if not isinstance(queue, str) or not queue:
        raise ValueError(f"{command}: 'queue' must be a queue (route) name")
    return queue


def _consumer(node: Node) -> ConsumerHandle:
    if node.consumer is None:
        raise RuntimeError("this process is not consuming yet")
    return node.consumer


def add_consumer(node: Node, arguments: dict[str, Any]) -> Any:
    """Declare the route and consume it too (until the worker stops)."""
    queue = _queue("add_consumer", arguments)
    if not _consumer(node).add_route(queue):
        return {"ok": f"already consuming from {queue!r}"}
    node.queues = (*node.queues, queue)
    return {"ok": f"add consumer {queue}"}


def cancel_consumer(node: Node, arguments: dict[str, Any]) -> Any:
    """Stop consuming the route: tasks received already run, the rest wait in the
    queue. A route not consumed is no error (as ``add_consumer`` twice is none)."""
    queue = _queue("cancel_consumer", arguments)
    if not _consumer(node).cancel_route(queue):
        return {"ok": f"not consuming from {queue!r}"}
    node.queues = tuple(q for q in node.queues if q != queue)
    return {"ok": f"no longer consuming from {queue}"}


def enable_events(node: Node, _arguments: dict[str, Any]) -> Any:
    changed = node.executor.events.switch(True)
    return {"ok": "task events enabled" if changed else "task events already enabled"}


def disable_events(node: Node, _arguments: dict[str, Any]) -> Any:
    changed = node.executor.events.switch(False)
    return {"ok": "task events disabled" if changed else "task events already disabled"}


COMMANDS: dict[str, Command] = {
    "rate_limit": rate_limit, "time_limit": time_limit, "add_consumer": add_consumer,
    "cancel_consumer": cancel_consumer, "enable_events": enable_events,
    "disable_events": disable_events}
"""The adjustment commands; worker/remote.py adds them to the ones a worker answers."""
