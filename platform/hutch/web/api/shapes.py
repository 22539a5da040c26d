"""What the API answers, built from the ops layer's records: hutch's own shapes
(``/api/v1``) and Flower's (``/api/tasks``, ``/api/task/info``, ``/api/workers``).

Flower builds its answers from Celery's event state; hutch from its tables. What
hutch does not record is given as Flower's "unknown" (``null``, ``[]`` or ``{}``):
docs/dashboard.md, "Flower compatibility", lists each such field.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import reprlib
from typing import Any

from ...ops.queues import QueueInfo
from ...ops.tasks import Attempt
from ...results.records import FAILURE, RETRY, REVOKED, SUCCESS, TaskRecord
from ...results.workers import OFFLINE, WorkerRecord
from ...serialization import from_primitive

LISTED_OUT = ("traceback", "result_encoded")
"""Left out of a task in a list (a page of tracebacks is heavy): the detail has them."""

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 1024
_repr.maxlevel = 6


def task(record: TaskRecord, *, detail: bool = False) -> dict[str, Any]:
    """A task as ``/api/v1`` shows it: its row, times in ISO 8601, an encoded result
    (one JSON cannot hold) in base64 beside its content type."""
    out: dict[str, Any] = {}
    for name, value in vars(record).items():
        if not detail and name in LISTED_OUT:
            continue
        if isinstance(value, dt.datetime):
            value = value.isoformat()
        elif isinstance(value, bytes):
            value = base64.b64encode(value).decode()
        out[name] = value
    out["ready"] = record.ready
    return out


def attempt(item: Attempt) -> dict[str, Any]:
    """A retried attempt as ``/api/v1/tasks/{id}`` lists it, times in ISO 8601."""
    return {name: _iso(value) if isinstance(value, dt.datetime) else value
            for name, value in vars(item).items()}


def queue(info: QueueInfo) -> dict[str, Any]:
    return vars(info).copy()


def _epoch(value: dt.datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def safe_repr(value: Any) -> str | None:
    """Celery's events carry ``repr`` of arguments and results; so does Flower."""
    if value is None:
        return None
    try:
        return _repr.repr(from_primitive(value))
    except Exception:  # noqa: BLE001 - an odd stored value shows as its JSON, never a 500
        return json.dumps(value, default=str)


def flower_task(record: TaskRecord, children: list[str] | None = None) -> dict[str, Any]:
    """A task in the shape of Celery's ``events.state.Task.as_dict()`` as Flower answers it."""
    finished = record.finished_at
    runtime = ((finished - record.started_at).total_seconds()
               if finished is not None and record.started_at is not None else None)
    exception = (f"{record.exception_type.rpartition('.')[2]}({record.exception_message!r})"
                 if record.exception_type else None)
    result = None
    if record.state == SUCCESS:
        result = (safe_repr(record.result) if record.result_encoded is None
                  else f"<{record.result_content_type} result>")
    return {
        "uuid": record.task_id, "name": record.name, "state": record.state,
        "received": _epoch(record.received_at), "sent": None,
        "started": _epoch(record.started_at), "rejected": None,
        "succeeded": _epoch(finished) if record.state == SUCCESS else None,
        "failed": _epoch(finished) if record.state == FAILURE else None,
        "retried": _epoch(record.started_at) if record.state == RETRY else None,
        "revoked": _epoch(finished) if record.state == REVOKED else None,
        "args": safe_repr(record.args) if record.args is not None else "()",
        "kwargs": safe_repr(record.kwargs) if record.kwargs is not None else "{}",
        "eta": _iso(record.eta), "expires": _iso(record.expires), "retries": record.retries,
        "worker": node_of(record.worker), "result": result, "exception": exception,
        "timestamp": _epoch(finished or record.started_at or record.received_at
                            or record.created_at),
        "runtime": runtime, "traceback": record.traceback, "exchange": None,
        "routing_key": record.queue, "clock": 0, "client": None,
        "root": record.root_id, "root_id": record.root_id,
        "parent": record.parent_id, "parent_id": record.parent_id,
        "children": children or [],
    }


def node_of(worker: str | None) -> str | None:
    """The node (``celery@host``, Flower's worker name) of a row's ``node:pid``."""
    if worker is None:
        return None
    node, _, pid = worker.rpartition(":")
    return node if node and pid.isdigit() else worker


def flower_worker(record: WorkerRecord) -> dict[str, Any]:
    """A worker in the shape of Flower's ``/api/workers`` entry, from its heartbeat row
    (Flower's comes from ``inspect``: what no row holds is empty)."""
    queues: list[dict[str, Any]] = [{"name": name, "routing_key": name, "durable": True, "exclusive": False,
               "auto_delete": False, "no_ack": False, "alias": None, "bindings": [],
               "exchange": {"name": "", "type": "direct", "durable": True}}
              for name in record.queues]
    rusage = {"maxrss": record.rss_bytes // 1024} if record.rss_bytes is not None else {}
    return {
        "active_queues": queues, "registered": [], "scheduled": [], "active": [],
        "reserved": [], "revoked": [], "conf": {},
        "stats": {"pid": record.pid, "prefetch_count": record.prefetch,
                  "pool": {"max-concurrency": record.concurrency, "processes": [],
                           "implementation": record.pool},
                  "rusage": rusage, "total": {}, "uptime": None},
        "timestamp": _epoch(record.last_heartbeat_at),
        "hutch": record.as_dict(),
    }


def worker_alive(record: WorkerRecord) -> bool:
    return record.state != OFFLINE
