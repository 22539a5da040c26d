"""Tasks and signal receivers for custom headers (tests/unit/test_custom_headers.py,
tests/integration/test_custom_headers_rabbitmq.py): a stand-in for OpenTelemetry's
Celery instrumentation, which puts a ``traceparent`` header on each message in
``before_task_publish`` and reads it back in ``task_prerun`` with
``getattr(task.request, "traceparent", None)``.

Importing this module connects nothing: ``connect()`` does (apps.header_app calls it in
the worker), ``disconnect()`` undoes it.
"""

from __future__ import annotations

from typing import Any

from apps.tasks import register as register_shared
from hutch import Hutch, signals
from hutch.current import current_request

PRERUN: dict[str, Any] = {}
"""Task id -> the traceparent task_prerun read from ``task.request`` in the process that
runs the task (a prefork child's own copy); the task hands it back in its result."""


def trace_publish(headers: dict[str, Any], **_: Any) -> None:
    """As a tracer does: a message sent while a task runs continues that task's trace
    (``<its traceparent>><message id>``), any other starts one (``root><message id>``)."""
    request = current_request()
    parent = getattr(request, "traceparent", None) if request is not None else None
    headers["traceparent"] = f"{parent or 'root'}>{headers['id']}"


def read_at_prerun(task_id: str, task: Any, **_: Any) -> None:
    PRERUN[task_id] = getattr(task.request, "traceparent", None)


def connect() -> None:
    signals.before_task_publish.connect(trace_publish)
    signals.task_prerun.connect(read_at_prerun)


def disconnect() -> None:
    signals.before_task_publish.disconnect(trace_publish)
    signals.task_prerun.disconnect(read_at_prerun)


def register(app: Hutch) -> Hutch:
    @app.task(name="tests.headers.trace", bind=True)
    def trace(self: Any, *args: Any) -> dict[str, Any]:
        """What this run saw of its custom headers: as attributes, in ``headers``, and
        what task_prerun read (``args`` take a chain step's previous result)."""
        r = self.request
        return {"id": r.id, "attribute": getattr(r, "traceparent", None),
                "headers": r.headers.get("traceparent"), "prerun": PRERUN.pop(r.id, None),
                "tenant": getattr(r, "tenant", None), "retries": r.retries}

    @app.task(name="tests.headers.retry_once", bind=True)
    def retry_once(self: Any) -> list[Any]:
        """Retries once; returns the traceparent of each attempt it saw."""
        if self.request.retries == 0:
            raise self.retry(countdown=0)
        return [self.request.retries, self.request.traceparent]

    @app.task(name="tests.headers.handover", bind=True)
    def handover(self: Any) -> Any:
        """Replaced by a trace task: the worker publishes the replacement."""
        return self.replace(trace.si())

    return app


def make_app(broker: str, backend: str, **settings: Any) -> Hutch:
    """The shared test tasks and these, on one app."""
    return register(register_shared(Hutch("tests", broker=broker, backend=backend, **settings)))
