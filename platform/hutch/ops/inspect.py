"""``app.control.inspect()``: ask the running workers, and merge what they answer.

A request (hutch.messages.ControlRequest) goes out on the control broadcast
naming a reply inbox of this process's (brokers.base.Replies); every worker
process answers for itself (worker/remote.py), each prefork child too. The
replies are grouped by hostname: a reply says how many processes of its worker
answer (``of``), so the wait ends early once every worker known in advance (the
``destination``, or ``expected``) or ``limit`` workers have answered in full, else
at ``timeout``.
Each command's replies are merged into Celery's shape, ``{hostname: reply}``,
and None when nobody answered, as Celery's inspect does.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any

from ..brokers.base import CONTROL
from ..messages import ControlReply, ControlRequest

if TYPE_CHECKING:
    from ..brokers.base import Broker

Replies = dict[str, Any]
"""``{hostname: reply}``: Celery's shape of an inspect command's answer."""
Merge = Callable[[list[Any]], Any]
"""The ``ok`` values of one worker's processes (in child order) -> the worker's reply."""


def merge_first(oks: list[Any]) -> Any:
    """One answer per worker however many processes it has (``ping``)."""
    return oks[0]


def merge_concatenated(oks: list[Any]) -> Any:
    """Every process's list, one after the other (``active``)."""
    return [item for ok in oks for item in ok]


def merge_union(oks: list[Any]) -> Any:
    """Every name once (``registered``)."""
    return sorted({item for ok in oks for item in ok})


def merge_stats(oks: list[Any]) -> Any:
    """The first process's stats, with every process in ``pool.processes``, the
    ``total`` and CPU times summed, the largest RSS and uptime."""
    merged = dict(oks[0])
    merged["pool"] = {**oks[0].get("pool", {}), "processes": sorted(
        pid for ok in oks for pid in ok.get("pool", {}).get("processes", []))}
    totals: Counter[str] = Counter()
    for ok in oks:
        totals.update(ok.get("total", {}))
    merged["total"] = dict(totals)
    usages = [ok.get("rusage", {}) for ok in oks]
    merged["rusage"] = {"utime": sum(u.get("utime", 0) for u in usages),
                        "stime": sum(u.get("stime", 0) for u in usages),
                        "maxrss": max(u.get("maxrss", 0) for u in usages)}
    merged["uptime"] = max(ok.get("uptime", 0) for ok in oks)
    return merged


def merge_default(oks: list[Any]) -> Any:
    """A command with no merge of its own: the one answer, or each process's in a list."""
    return oks[0] if len(oks) == 1 else oks


def merge_mappings(oks: list[Any]) -> Any:
    """``query_task``: each process knows the tasks it runs."""
    return {key: value for ok in oks for key, value in ok.items()}


MERGES: dict[str, Merge] = {"ping": merge_first, "active": merge_concatenated,
                            "registered": merge_union, "stats": merge_stats,
                            "active_queues": merge_first, "query_task": merge_mappings,
                            "reserved": merge_concatenated, "scheduled": merge_concatenated,
                            "revoked": merge_union, "conf": merge_first, "report": merge_first}
MERGES.update(dict.fromkeys(
    ("shutdown", "pool_grow", "pool_shrink", "autoscale", "heartbeat"), merge_first))
"""Worker-wide commands: every child answers the same, the worker acts once."""


class Collected:
    """Replies to one ticket, grouped by hostname, with how many each worker owes."""

    def __init__(self) -> None:
        self.by_host: dict[str, dict[int | None, ControlReply]] = defaultdict(dict)
        self.owed: dict[str, int] = {}

    def add(self, reply: ControlReply) -> None:
        self.by_host[reply.hostname][reply.child] = reply
        self.owed[reply.hostname] = reply.of

    def complete(self, hostnames: Collection[str]) -> bool:
        """Whether every one of ``hostnames`` has answered from all its processes."""
        return all(self._answered_in_full(h) for h in hostnames)

    def in_full(self) -> list[str]:
        """The hostnames that have answered from all their processes."""
        return [h for h in self.by_host if self._answered_in_full(h)]

    def _answered_in_full(self, hostname: str) -> bool:
        return len(self.by_host.get(hostname, ())) >= self.owed.get(hostname, 1)

    def merged(self, merge: Merge) -> Replies | None:
        if not self.by_host:
            return None
        out: Replies = {}
        for hostname, replies in sorted(self.by_host.items()):
            ordered = [replies[k] for k in sorted(replies, key=lambda c: -1 if c is None else c)]
            errors = sorted({r.error for r in ordered if r.error is not None})
            out[hostname] = ({"error": "; ".join(errors)} if errors
                             else merge([r.ok for r in ordered]))
        return out


class Inspect:
    """Celery's ``app.control.inspect()`` for ``ping``, ``stats``, ``active``,
    ``registered``, ``active_queues``, ``query_task``, ``reserved``, ``scheduled``,
    ``revoked``, ``conf`` and ``report``, and :meth:`delayed`; ``expected``: hostnames
    whose full answer ends the wait early (``hutch status`` passes the workers the
    heartbeat table knows); ``limit``: as Celery's, the number of workers whose full
    answer ends the wait early (for a caller that knows how many run)."""

    def __init__(self, broker: Broker, destination: Sequence[str] | None = None,
                 timeout: float = 1.0, expected: Collection[str] | None = None,
                 limit: int | None = None) -> None:
        self.broker = broker
        self.destination = tuple(destination) if destination else None
        self.timeout = timeout
        self.expected = tuple(expected) if expected is not None else self.destination
        self.limit = limit

    def ping(self) -> Replies | None:
        return self.call("ping")

    def stats(self) -> Replies | None:
        return self.call("stats")

    def active(self) -> Replies | None:
        return self.call("active")

    def registered(self, builtins: bool = False) -> Replies | None:
        return self.call("registered", {"builtins": True} if builtins else None)

    def active_queues(self) -> Replies | None:
        return self.call("active_queues")

    def query_task(self, *ids: str) -> Replies | None:
        """``query_task(id1, id2)`` or ``query_task([id1, id2])``, as Celery takes them."""
        flat = [i for given in ids for i in ([given] if isinstance(given, str) else given)]
        return self.call("query_task", {"ids": flat})

    def reserved(self) -> Replies | None:
        """Tasks received (prefetched) and not started yet, in ``active``'s shape."""
        return self.call("reserved")

    def scheduled(self) -> Replies | None:
        """``{hostname: []}``: an eta or countdown waits in RabbitMQ's delay ladder, never
        in a worker (:meth:`delayed` counts the ladder)."""
        return self.call("scheduled")

    def delayed(self) -> int:
        """Messages waiting in the delay ladder now, every route's: etas, countdowns,
        retries and rate-limit waits (hutch's answer to what Celery's ``scheduled`` lists)."""
        return self.broker.delayed_count()

    def revoked(self) -> Replies | None:
        """The task ids each worker refuses to run."""
        return self.call("revoked")

    def conf(self, with_defaults: bool = False) -> Replies | None:
        """Each worker's settings not at their defaults (all ``with_defaults``), masked."""
        return self.call("conf", {"with_defaults": True} if with_defaults else None)

    def report(self) -> Replies | None:
        """``{hostname: {"ok": text}}``: versions, platform, broker, results, pool, settings."""
        return self.call("report")

    def call(self, command: str, arguments: dict[str, Any] | None = None) -> Replies | None:
        """Send ``command`` and merge the replies (a worker that refused it: ``{"error":
        text}``); None when nobody answered within the timeout."""
        return self.collect(command, arguments).merged(MERGES.get(command, merge_default))

    def collect(self, command: str, arguments: dict[str, Any] | None = None) -> Collected:
        """The raw replies to one request, each process's on its own."""
        inbox = self.broker.open_inbox()
        try:
            request = ControlRequest(command, inbox.name, str(uuid.uuid4()),
                                     dict(arguments or {}), self.destination)
            self.broker.broadcast(CONTROL, request.encode())
            return self._gather(inbox, request.ticket)
        finally:
            inbox.close()

    def _gather(self, inbox: Any, ticket: str) -> Collected:
        collected = Collected()
        deadline = time.monotonic() + self.timeout
        while not self._enough(collected):
            left = deadline - time.monotonic()
            body = inbox.get(left) if left > 0 else None
            if body is None:
                break
            reply = ControlReply.decode(body)
            if reply is not None and reply.ticket == ticket:
                collected.add(reply)
        return collected

    def _enough(self, collected: Collected) -> bool:
        if self.expected and collected.complete(self.expected):
            return True
        return self.limit is not None and len(collected.in_full()) >= self.limit


OK, NO_REPLY, OFFLINE = "OK", "no reply", "offline"


def worker_status(known: Sequence[tuple[str, str]], pings: Replies | None) -> list[tuple[str, str]]:
    """``hutch status``: each worker of the heartbeat table (``(hostname, effective
    state)``) and each that answered without a row yet, with OK (answered the ping),
    offline (silent, and its heartbeats stopped) or no reply (silent though its
    heartbeats say it runs)."""
    answered = pings or {}
    rows = dict(known)
    status = {h: OK if h in answered else OFFLINE if s == "offline" else NO_REPLY
              for h, s in rows.items()}
    status.update({h: OK for h in answered})
    return sorted(status.items())
