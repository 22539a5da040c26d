"""The inspect commands a worker process answers (``hutch inspect``,
``app.control.inspect()``), by Celery's names and in Celery's reply shapes: what
this process is and holds. worker/remote.py dispatches them; each prefork child
answers for itself and hutch.ops.inspect merges the answers per worker.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Collection
from importlib import metadata
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..config import DEFAULT, broker_urls, mask_url
from ..errors import MessageError, SerializationError
from ..messages import TaskMessage

if TYPE_CHECKING:
    from ..brokers.base import Delivery
    from ..config import Settings
    from .executor import Job
    from .node import Command, Node


def ping(_node: Node, _arguments: dict[str, Any]) -> Any:
    return {"ok": "pong"}


def registered(node: Node, arguments: dict[str, Any]) -> Any:
    """The task names this process runs; hutch's own (``hutch.*``) only with
    ``builtins``, as Celery leaves out ``celery.*``."""
    builtins = bool(arguments.get("builtins"))
    return sorted(n for n in node.executor.tasks if builtins or not n.startswith("hutch."))


def active(node: Node, _arguments: dict[str, Any]) -> Any:
    return [_running(node, job) for job in list(node.executor.running.values())]


def _running(node: Node, job: Job) -> dict[str, Any]:
    """A running task in Celery's ``active`` shape."""
    return _request(node, job.message, job.delivery, job.started_at.timestamp(),
                    job.acked_early)


def _request(node: Node, message: TaskMessage, delivery: Delivery, time_start: float | None,
             acknowledged: bool) -> dict[str, Any]:
    """A task this process holds, in Celery's shape of a request (``active``, ``reserved``)."""
    return {"id": message.id, "name": message.task, "args": list(message.args),
            "kwargs": message.kwargs, "type": message.task, "hostname": node.hostname,
            "time_start": time_start, "acknowledged": acknowledged,
            "delivery_info": {"exchange": "", "routing_key": message.queue,
                              "priority": message.priority,
                              "redelivered": delivery.redelivered},
            "worker_pid": os.getpid()}


def active_queues(node: Node, _arguments: dict[str, Any]) -> Any:
    """The routes this process consumes (every prefork child consumes the same ones)."""
    return [{"name": route, "routing_key": route, "durable": True, "exclusive": False,
             "auto_delete": False} for route in node.queues]


def query_task(node: Node, arguments: dict[str, Any]) -> Any:
    """Celery's ``query_task``: ``{id: ["active", task]}`` for each of ``ids`` running
    here. Waiting and delayed tasks are RabbitMQ's, not a worker's: ``hutch result ID``."""
    ids = arguments.get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError("query_task: 'ids' must be a list of task ids")
    running = list(node.executor.running.values())
    return {job.message.id: ["active", _running(node, job)] for job in running
            if job.message.id in ids}


def stats(node: Node, _arguments: dict[str, Any]) -> Any:
    """Celery's ``stats`` as far as it is cheap: ``total`` holds this process's counts
    (hutch counts outcomes, not task names)."""
    url = urlsplit(broker_urls(node.broker_url)[0])  # the first node of a list
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "pid": node.worker_pid,
        "pool": {"implementation": node.pool, "max-concurrency": node.size(),
                 "processes": [os.getpid()]},
        "broker": {"transport": url.scheme, "hostname": url.hostname, "port": url.port,
                   "virtual_host": url.path[1:] or "/"},
        "prefetch_count": node.prefetch,
        "total": {**node.executor.counters.snapshot(), **node.counters.snapshot()},
        "rusage": {"utime": usage.ru_utime, "stime": usage.ru_stime,
                   "maxrss": usage.ru_maxrss},
        "uptime": round(time.monotonic() - node.started),
    }


def reserved(node: Node, _arguments: dict[str, Any]) -> Any:
    """Celery's ``reserved``: tasks received (prefetched) and not started yet, in the
    pool's queue or held by a rate limit; decoded here, so holding them costs the hot
    path nothing but a dict entry (worker/executor.py). Undecodable ones are left out:
    the executor dead-letters them."""
    executor = node.executor
    out = []
    for delivery in list(executor.reserved.values()):
        try:
            message = TaskMessage.decode(delivery.wire, executor.accept, executor.max_bytes)
        except (MessageError, SerializationError):
            continue
        out.append(_request(node, message, delivery, None, False))
    return out


def scheduled(_node: Node, _arguments: dict[str, Any]) -> Any:
    """Celery's ``scheduled`` (tasks held for their eta): none. An eta or countdown
    waits in RabbitMQ's delay ladder, never in a worker; the requester counts the
    ladder (``Inspect.delayed``)."""
    return []


def revoked(node: Node, _arguments: dict[str, Any]) -> Any:
    """Celery's ``revoked``: the ids this process refuses to run (worker/revocations.py)."""
    ids = node.executor.revoked
    return sorted(ids) if isinstance(ids, Collection) else []


def conf(node: Node, arguments: dict[str, Any]) -> Any:
    """Celery's ``conf``: the settings not left at their defaults (all with
    ``with_defaults``), secrets masked as ``hutch config show`` masks them."""
    return _settings(node.executor.conf, bool(arguments.get("with_defaults")))


def _settings(settings: Settings, with_defaults: bool) -> dict[str, Any]:
    return {name: value for name, value in settings.masked().items()
            if with_defaults or settings.source_of(name) != DEFAULT}


def report(node: Node, _arguments: dict[str, Any]) -> Any:
    """Celery's ``report``: ``{"ok": text}``, a bug report's software versions,
    platform, broker, result store and pool, then the settings not at their defaults."""
    settings = node.executor.conf
    versions = " ".join(f"{name}:{_version(name)}" for name in REPORTED_PACKAGES)
    pool = f"{node.pool} concurrency {node.size()}" + (
        f" (child {node.child} of {node.of})" if node.child is not None else "")
    lines = [f"software -> hutch:{_version('hutch')} python:{platform.python_version()} "
             f"({platform.python_implementation()}) {versions}",
             f"platform -> system:{platform.system()} release:{platform.release()} "
             f"arch:{platform.machine()}",
             f"broker -> transport:{urlsplit(node.broker_url).scheme} "
             f"url:{mask_url(node.broker_url)}",
             f"results -> {mask_url(settings.result_backend)}",
             f"pool -> {pool} prefetch {node.prefetch}",
             "settings ->",
             *(f"  {name}: {value!r}" for name, value in
               _settings(settings, with_defaults=False).items())]
    return {"ok": "\n".join(lines)}


REPORTED_PACKAGES = ("pika", "aio-pika", "sqlalchemy")
"""The libraries whose versions ``report`` gives beside hutch's and Python's."""


def _version(package: str) -> str:
    """The installed distribution's version (hutch.__version__ is a layer above)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


QUERIES: dict[str, Command] = {
    "ping": ping, "stats": stats, "active": active, "registered": registered,
    "active_queues": active_queues, "query_task": query_task, "reserved": reserved,
    "scheduled": scheduled, "revoked": revoked, "conf": conf, "report": report}
"""The inspect commands, by Celery's names."""
