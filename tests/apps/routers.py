"""Routers named by path in ``task_routes`` (tests/unit/test_routing.py)."""

from __future__ import annotations

CALLS: list[tuple] = []


def by_first_argument(name, args, kwargs, options, task=None, **kw):
    """Celery's router signature: the queue is the call's first argument, for tests.echo."""
    CALLS.append((name, args, kwargs, options, task))
    if name == "tests.echo":
        return {"queue": f"echo-{args[0]}"}
    return None


class OldStyleRouter:
    """A Celery 3 router class: ``route_for_task`` on an instance."""

    def route_for_task(self, task, args=None, kwargs=None):
        return "old-style" if task == "tests.mul" else None
