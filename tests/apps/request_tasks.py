"""Tasks for Reject, Ignore, ``self.retry()``'s keywords and ``self.request``'s Celery
fields (tests/unit/test_request_memory.py, tests/integration/test_request_rabbitmq.py).
Each returns or records what it saw, so a test can assert it from the result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apps.tasks import app_from_env
from apps.tasks import register as register_shared
from hutch import Hutch, Ignore, Reject


def seen(request: Any) -> dict[str, Any]:
    """The Celery fields of ``request``, as JSON can carry them back."""
    return {
        "id": request.id, "args": list(request.args), "kwargs": request.kwargs,
        "retries": request.retries, "is_eager": request.is_eager,
        "eta": request.eta.isoformat() if request.eta else None,
        "expires": request.expires.isoformat() if request.expires else None,
        "hostname": request.hostname, "delivery_info": request.delivery_info,
        "properties": request.properties, "reply_to": request.reply_to,
        "correlation_id": request.correlation_id, "root_id": request.root_id,
        "parent_id": request.parent_id, "group": request.group, "chord": request.chord,
        "callbacks": request.callbacks, "errbacks": request.errbacks,
        "timelimit": list(request.timelimit), "origin": request.origin,
        "ignore_result": request.ignore_result, "queue": request.queue,
        "priority": request.priority,
    }


def _first_time(marker: str) -> bool:
    """True once per marker file: the first attempt of a task that behaves differently
    when run again (works across prefork children, unlike a module global)."""
    path = Path(marker)
    if path.exists():
        return False
    path.write_text("seen")
    return True


def register(app: Hutch) -> Hutch:
    @app.task(name="tests.request.seen", bind=True)
    def request_seen(self, *args, **kwargs):
        return seen(self.request)

    @app.task(name="tests.request.reject", acks_late=True)
    def reject(reason=None, requeue=False):
        raise Reject(reason, requeue=requeue)

    @app.task(name="tests.request.reject_early", acks_late=False)
    def reject_early(reason=None, requeue=False):
        raise Reject(reason, requeue=requeue)

    @app.task(name="tests.request.reject_once", acks_late=True)
    def reject_once(marker):
        if _first_time(marker):
            raise Reject("not now", requeue=True)
        return "ran again"

    @app.task(name="tests.request.ignore")
    def ignore():
        raise Ignore()

    @app.task(name="tests.request.retry_with", bind=True, max_retries=2)
    def retry_with(self, *args, **kwargs):
        """First attempt: ``self.retry(**kwargs["retry"])``; then what the retry sees."""
        if self.request.retries == 0:
            raise self.retry(countdown=0, **kwargs["retry"])
        return seen(self.request)

    @app.task(name="tests.request.retry_later", bind=True, max_retries=1)
    def retry_later(self):
        """``self.retry(throw=False)``: the run goes on, and its value is not the outcome."""
        if self.request.retries == 0:
            returned = self.retry(countdown=0, throw=False)
            return f"not the outcome: {type(returned).__name__}"
        return "second attempt"

    return app


def make_app(broker: str, backend: str, **settings: Any) -> Hutch:
    """The shared test tasks and these, on one app."""
    return register(register_shared(Hutch("tests", broker=broker, backend=backend, **settings)))


def app_from_env_with_requests() -> Hutch:
    return register(app_from_env())
