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
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..errors import MessageError
from ..logs import get_logger
from ..messages import ControlReply, ControlRequest, wants_reply
from . import adjustments

if TYPE_CHECKING:
    from ..brokers.base import ConsumerHandle, Replies
    from .counters import Counters
    from .executor import Executor, Job

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
    consumer: ConsumerHandle | None = None
    """Set once consuming: what add_consumer/cancel_consumer change (worker/adjustments.py)."""

    @property
    def of(self) -> int:
        """How many processes of this worker answer: every prefork child, else one."""
        return self.concurrency if self.child is not None else 1

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
    message = job.message
    return {"id": message.id, "name": message.task, "args": list(message.args),
            "kwargs": message.kwargs, "type": message.task, "hostname": node.hostname,
            "time_start": job.started_at.timestamp(), "acknowledged": job.acked_early,
            "delivery_info": {"exchange": "", "routing_key": message.queue,
                              "priority": message.priority,
                              "redelivered": job.delivery.redelivered},
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
    url = urlsplit(node.broker_url)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "pid": node.worker_pid,
        "pool": {"implementation": node.pool, "max-concurrency": node.concurrency,
                 "processes": [os.getpid()]},
        "broker": {"transport": url.scheme, "hostname": url.hostname, "port": url.port,
                   "virtual_host": url.path[1:] or "/"},
        "prefetch_count": node.prefetch,
        "total": {**node.executor.counters.snapshot(), **node.counters.snapshot()},
        "rusage": {"utime": usage.ru_utime, "stime": usage.ru_stime,
                   "maxrss": usage.ru_maxrss},
        "uptime": round(time.monotonic() - node.started),
    }


COMMANDS: dict[str, Command] = {
    "ping": ping, "stats": stats, "active": active, "registered": registered,
    "active_queues": active_queues, "query_task": query_task}
"""The commands a worker answers, by Celery's names; hutch.ops.inspect merges them."""
COMMANDS.update(adjustments.COMMANDS)  # rate_limit, add_consumer ...: worker/adjustments.py


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
        try:
            outcome = command(self.node, request.arguments)
        except Exception as exc:  # noqa: BLE001 - the requester hears of it, the worker goes on
            self._error(request.reply_to, request.ticket, f"{type(exc).__name__}: {exc}")
            return
        self._send(request.reply_to, ControlReply(
            request.ticket, self.node.hostname, self.node.child, self.node.of, os.getpid(),
            ok=outcome))

    def _error(self, reply_to: str, ticket: str, error: str) -> None:
        log.warning("control request refused", error=error, reply_to=reply_to)
        self._send(reply_to, ControlReply(ticket, self.node.hostname, self.node.child,
                                          self.node.of, os.getpid(), error=error))

    def _send(self, reply_to: str, reply: ControlReply) -> None:
        try:
            self.replies.reply(reply_to, reply.encode())
        except Exception as exc:  # noqa: BLE001 - best effort, as Replies.reply promises
            log.warning("control reply not sent", error=f"{type(exc).__name__}: {exc}")
