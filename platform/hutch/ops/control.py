"""``app.control``: commands for every running worker, as Celery's ``app.control``.

The CLI (``hutch control ...``, ``hutch inspect``) and the dashboard use it; the
requests that collect replies are hutch.ops.inspect's, and the commands that
change a worker (``rate_limit``, ``add_consumer`` ...) answer with Celery's
``[{hostname: {"ok": text}}, ...]`` when ``reply=True`` (worker/adjustments.py). The
mechanics of a revocation (stored, then broadcast) are the client's,
:func:`hutch.client.revocation.revoke`, which result handles use too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..client import revocation
from .inspect import Collected, Inspect, Merge, merge_default

if TYPE_CHECKING:
    from ..client.sync import Client


Answers = list[dict[str, Any]]
"""Celery's shape of a control command's replies: ``[{hostname: reply}, ...]``."""


def merge_agreed(oks: list[Any]) -> Any:
    """One worker's processes (prefork children) each changed themselves: their
    answer when they agree, else each different ``ok`` text, joined."""
    if all(ok == oks[0] for ok in oks):
        return oks[0]
    if all(isinstance(ok, dict) and isinstance(ok.get("ok"), str) for ok in oks):
        return {"ok": "; ".join(sorted({ok["ok"] for ok in oks}))}
    return merge_default(oks)


class Control:
    """Celery's ``app.control`` for what hutch supports: ``revoke``,
    ``revoke_by_stamped_headers``, ``inspect``,
    ``ping``, ``broadcast`` and the commands that change running workers."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def revoke(self, task_id: str | Iterable[str], terminate: bool = False,
               signal: str | int | None = None, destination: Sequence[str] | None = None,
               reply: bool = False, timeout: float = 1.0) -> list[Any]:
        """Make sure these tasks never run, and with ``terminate`` stop them if running;
        the ids marked REVOKED at once (see :func:`hutch.client.revocation.revoke`).

        With ``reply``: Celery's ``[{hostname: {"ok": "tasks ... flagged as revoked"}},
        ...]`` instead, from every worker or those in ``destination``. The revocation
        reaches every worker either way (it is stored, and a worker started later honours
        it): ``destination`` only picks whose answers to wait for."""
        if not reply:
            return revocation.revoke(self.client, task_id, terminate, signal)
        return self.revoke_asking(task_id, terminate, signal, destination, timeout)[1]

    def revoke_asking(self, task_id: str | Iterable[str], terminate: bool = False,
                      signal: str | int | None = None,
                      destination: Sequence[str] | None = None,
                      timeout: float = 1.0) -> tuple[list[str], Answers]:
        """:meth:`revoke` with ``reply``, and the ids marked REVOKED at once too."""
        asking = Inspect(self.client.broker, None, timeout, expected=destination)
        answered: list[Collected] = []
        marked = revocation.revoke(self.client, task_id, terminate, signal,
                                   tell=lambda command: answered.append(
                                       asking.collect("revoke", command.arguments())))
        merged = answered[0].merged(merge_agreed) or {}
        return marked, [{hostname: answer} for hostname, answer in merged.items()
                        if destination is None or hostname in destination]

    def revoke_by_stamped_headers(self, headers: Mapping[str, Any], terminate: bool = False,
                                  signal: str | int | None = "SIGTERM") -> None:
        """Celery's ``revoke_by_stamped_headers``: no task stamped with one of these values
        (``{"name": value or [values]}``, docs/workflows.md "Stamping") runs from now on,
        on any worker, including those started later (stored like :meth:`revoke`); with
        ``terminate``, those running are stopped too (prefork and asyncio pools)."""
        revocation.revoke_by_stamps(self.client, headers, terminate, signal)

    def inspect(self, destination: Sequence[str] | None = None,
                timeout: float = 1.0, limit: int | None = None) -> Inspect:
        """Ask the running workers (all, or those named in ``destination``) what they
        are and do: ``.ping()``, ``.stats()``, ``.active()``, ``.registered()``. The
        wait ends at ``timeout``, or sooner once every destination or ``limit``
        workers have answered."""
        return Inspect(self.client.broker, destination, timeout, limit=limit)

    def ping(self, destination: Sequence[str] | None = None,
             timeout: float = 1.0, limit: int | None = None) -> list[dict[str, Any]]:
        """Celery's ``app.control.ping()``: ``[{hostname: {"ok": "pong"}}, ...]``, one
        entry per worker that answered."""
        replies = self.inspect(destination, timeout, limit).ping() or {}
        return [{hostname: reply} for hostname, reply in replies.items()]

    def broadcast(self, command: str, arguments: dict[str, Any] | None = None,
                  destination: Sequence[str] | None = None, reply: bool = False,
                  timeout: float = 1.0, merge: Merge = merge_agreed,
                  limit: int | None = None) -> Answers | None:
        """Send ``command`` to every worker (or those in ``destination``); with
        ``reply``, wait up to ``timeout`` (less once every destination, or ``limit``
        workers, answered in full) and return ``[{hostname: reply}, ...]``, each
        worker's processes merged (a refusal: ``{"error": text}``); None without
        ``reply``, as Celery."""
        asking = Inspect(self.client.broker, destination, timeout if reply else 0.0,
                         limit=limit)
        collected = asking.collect(command, arguments)
        if not reply:
            return None
        merged = collected.merged(merge) or {}
        return [{hostname: answer} for hostname, answer in merged.items()]

    def rate_limit(self, task_name: str, rate_limit: str | float | None,
                   destination: Sequence[str] | None = None, reply: bool = False,
                   timeout: float = 1.0) -> Answers | None:
        """Change the task's rate limit (``"10/m"``; None or 0 lifts it) in every
        worker process, a prefork child taking 1/N of it."""
        return self.broadcast("rate_limit", {"task_name": task_name, "rate_limit": rate_limit},
                              destination, reply, timeout)

    def time_limit(self, task_name: str, soft: float | None = None, hard: float | None = None,
                   destination: Sequence[str] | None = None, reply: bool = False,
                   timeout: float = 1.0) -> Answers | None:
        """Replace the task's soft and hard time limits (seconds; None: none) for the
        tasks the workers start from now on."""
        return self.broadcast("time_limit", {"task_name": task_name, "soft": soft,
                                             "hard": hard}, destination, reply, timeout)

    def add_consumer(self, queue: str, destination: Sequence[str] | None = None,
                     reply: bool = False, timeout: float = 1.0) -> Answers | None:
        """Make the workers declare and consume ``queue`` (a route) too."""
        return self.broadcast("add_consumer", {"queue": queue}, destination, reply, timeout)

    def cancel_consumer(self, queue: str, destination: Sequence[str] | None = None,
                        reply: bool = False, timeout: float = 1.0) -> Answers | None:
        """Make the workers stop consuming ``queue``; its messages wait in RabbitMQ."""
        return self.broadcast("cancel_consumer", {"queue": queue}, destination, reply,
                              timeout)

    def enable_events(self, destination: Sequence[str] | None = None, reply: bool = False,
                      timeout: float = 1.0) -> Answers | None:
        """Make the workers send task events (``hutch events``)."""
        return self.broadcast("enable_events", None, destination, reply, timeout)

    def disable_events(self, destination: Sequence[str] | None = None, reply: bool = False,
                       timeout: float = 1.0) -> Answers | None:
        return self.broadcast("disable_events", None, destination, reply, timeout)

    def shutdown(self, destination: Sequence[str] | None = None, reply: bool = False,
                 timeout: float = 1.0) -> Answers | None:
        """Warm-stop the workers (running tasks finish)."""
        return self.broadcast("shutdown", None, destination, reply, timeout)

    def pool_grow(self, n: int = 1, destination: Sequence[str] | None = None,
                  reply: bool = False, timeout: float = 1.0) -> Answers | None:
        """Add ``n`` processes to each worker's pool."""
        return self.broadcast("pool_grow", {"n": n}, destination, reply, timeout)

    def pool_shrink(self, n: int = 1, destination: Sequence[str] | None = None,
                    reply: bool = False, timeout: float = 1.0) -> Answers | None:
        """Remove ``n`` processes from each worker's pool."""
        return self.broadcast("pool_shrink", {"n": n}, destination, reply, timeout)

    def autoscale(self, max: int, min: int,  # noqa: A002 - Celery's argument names
                  destination: Sequence[str] | None = None, reply: bool = False,
                  timeout: float = 1.0) -> Answers | None:
        """Let each worker's pool range between ``min`` and ``max`` processes."""
        return self.broadcast("autoscale", {"max": max, "min": min}, destination, reply,
                              timeout)

    def heartbeat(self, destination: Sequence[str] | None = None, reply: bool = False,
                  timeout: float = 1.0) -> Answers | None:
        """Make the workers write their heartbeat now."""
        return self.broadcast("heartbeat", None, destination, reply, timeout)
