"""A worker process's answers to control requests (``hutch inspect``, ``app.control.inspect()``).

The request arrives on the control broadcast this process subscribes to for
revocations (worker/revocations.py hands over every body that asks for a reply);
the answer goes to the requester's inbox (brokers.base.Replies). Every consuming
process answers for itself, each prefork child too, so a reply says which child
of how many it is and the requester merges them per worker (hutch.ops.inspect).

Each command is a function of the process's :class:`Node` and the request's
arguments returning Celery's reply for that command, kept in :data:`COMMANDS`.
Nothing here raises into the subscription thread: a malformed request or an
unknown command gets an error reply and a warning in the log.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..config import DEFAULT, mask_url
from ..errors import MessageError, SerializationError
from ..logs import get_logger
from ..messages import ControlReply, ControlRequest, RevokeCommand, TaskMessage, wants_reply
from . import adjustments, steering
from .revocations import Revocations

if TYPE_CHECKING:
    from ..brokers.base import ConsumerHandle, Delivery, Replies
    from ..config import Settings
    from .counters import Counters
    from .executor import Executor, Job
    from .steering import Orders

log = get_logger("hutch.control")


@dataclass
class Node:
    """What a worker process tells about itself: ``hostname`` (``name@host``), the pool
    the operator chose and its concurrency, and for a prefork child its index."""

    hostname: str
    pool: str
    concurrency: int
    child: int | None
    prefetch: int
    broker_url: str
    executor: Executor
    counters: Counters
    queues: tuple[str, ...] = ()
    started: float = field(default_factory=time.monotonic)
    orders: Orders | None = None
    """Where worker-wide commands go (worker/steering.py); None: refused."""
    ticket: str = ""
    """The ticket of the request being answered (a worker-wide command carries it to the
    prefork supervisor, which acts once per ticket whichever children post it)."""
    consumer: ConsumerHandle | None = None
    """Set once consuming: what add_consumer/cancel_consumer change (worker/adjustments.py)."""

    def size(self) -> int:
        """The pool's size now (``concurrency`` is what it started with)."""
        return self.orders.size() if self.orders is not None else self.concurrency

    @property
    def of(self) -> int:
        """How many processes of this worker answer: every prefork child, else one."""
        return self.size() if self.child is not None else 1

    @property
    def worker_pid(self) -> int:
        """The worker's main process: a prefork child's supervisor, else this one."""
        return os.getppid() if self.child is not None else os.getpid()


Command = Callable[[Node, dict[str, Any]], Any]


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


def revoke(node: Node, arguments: dict[str, Any]) -> Any:
    """A revocation sent with ``reply=True`` (``app.control.revoke``): applied as the
    broadcast one is (worker/revocations.py), then answered with Celery's text."""
    command = RevokeCommand.of_arguments(arguments)
    revocations = node.executor.revoked
    if not isinstance(revocations, Revocations):
        raise ValueError("revoke: this process keeps no revocations")
    revocations.apply(command)
    return {"ok": f"tasks {', '.join(command.ids)} flagged as revoked"}


def stats(node: Node, _arguments: dict[str, Any]) -> Any:
    """Celery's ``stats`` as far as it is cheap: ``total`` holds this process's counts
    (hutch counts outcomes, not task names)."""
    url = urlsplit(node.broker_url)
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
    pool = f"{node.pool} concurrency {node.concurrency}" + (
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


COMMANDS: dict[str, Command] = {
    "ping": ping, "stats": stats, "active": active, "registered": registered,
    "active_queues": active_queues, "query_task": query_task, "reserved": reserved,
    "scheduled": scheduled, "revoked": revoked, "conf": conf, "report": report,
    "revoke": revoke,
    **steering.COMMANDS, **adjustments.COMMANDS}
"""The commands a worker answers, by Celery's names; hutch.ops.inspect merges them. The
worker-wide ones (shutdown, pool_grow ...) are worker/steering.py's, those that adjust
one process (rate_limit, add_consumer ...) worker/adjustments.py's."""


class Remote:
    """Answers the control requests that reach one worker process."""

    def __init__(self, node: Node, replies: Replies) -> None:
        self.node = node
        self.replies = replies

    def handle(self, body: bytes) -> bool:
        """Answer ``body`` if it asks for a reply (False: not a request, e.g. a
        revocation); never raises."""
        address = wants_reply(body)
        if address is None:
            return False
        reply_to, ticket, destination = address
        if destination is not None and self.node.hostname not in destination:
            return True
        try:
            request = ControlRequest.decode(body)
        except MessageError as exc:
            self._error(reply_to, ticket, str(exc))
            return True
        if request.is_for(self.node.hostname):
            self._answer(request)
        return True

    def _answer(self, request: ControlRequest) -> None:
        command = COMMANDS.get(request.command)
        if command is None:
            self._error(request.reply_to, request.ticket,
                        f"unknown command {request.command!r}")
            return
        self.node.ticket = request.ticket
        try:
            outcome = command(self.node, request.arguments)
        except Exception as exc:  # noqa: BLE001 - the requester hears of it, the worker goes on
            self._error(request.reply_to, request.ticket, f"{type(exc).__name__}: {exc}")
            return
        if request.command in adjustments.COMMANDS and self.node.orders is not None:
            self.node.orders.adjusted(request.command, request.arguments, request.ticket)
        self._send(request.reply_to, ControlReply(
            request.ticket, self.node.hostname, self.node.child, self.node.of, os.getpid(),
            ok=outcome))

    def replay(self, made: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Make again the adjustments made to the process this one replaces (a prefork
        child: its supervisor kept them, worker/steering.py), before it consumes."""
        for command, arguments in made:
            try:
                adjustments.COMMANDS[command](self.node, arguments)
            except Exception as exc:  # noqa: BLE001 - one that no longer applies is skipped
                log.warning("adjustment not made again", command=command,
                            error=f"{type(exc).__name__}: {exc}")
                continue
            log.info("adjustment made again", command=command, arguments=arguments)

    def _error(self, reply_to: str, ticket: str, error: str) -> None:
        log.warning("control request refused", error=error, reply_to=reply_to)
        self._send(reply_to, ControlReply(ticket, self.node.hostname, self.node.child,
                                          self.node.of, os.getpid(), error=error))

    def _send(self, reply_to: str, reply: ControlReply) -> None:
        try:
            self.replies.reply(reply_to, reply.encode())
        except Exception as exc:  # noqa: BLE001 - best effort, as Replies.reply promises
            log.warning("control reply not sent", error=f"{type(exc).__name__}: {exc}")
