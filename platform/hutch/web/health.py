"""``/healthz`` and ``/readyz``: what a load balancer, an orchestrator or a monitor asks.

- ``/healthz``: the process is up and its loop answers: always 200
  ``{"status": "ok"}``. (systemd's watchdog watches the loop too: hutch.web.server.)
- ``/readyz``: the parts the dashboard reads answer now: the result store (one
  ``SELECT 1`` on the result database, whose schema must be current) and the broker
  (a passive declare of the default queue on a short-lived connection). 200
  ``{"status": "ok", "checks": {"database": "ok", "broker": "ok"}}``, or 503 with
  ``"unavailable"`` for each part that does not answer.

The answers name the parts and nothing else: no URL, host or error text, which
could carry a secret. Why a part is unavailable goes to the log (passwords masked),
once when it stops answering and once when it answers again, not at every probe.

The probes are blocking clients (SQLAlchemy, pika), so each runs in a daemon
thread, all at once, bounded by a timeout: a stuck database makes ``/readyz``
answer 503 in time, not hang. A probe still stuck at the next check is waited for
again rather than started twice (one thread per part at most), and, being a
daemon thread, never holds up the process's exit. Requests that arrive while a
check runs share its answer, so a burst of probes costs one check.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from ..config import mask_secrets
from ..errors import HutchError
from ..logs import get_logger

if TYPE_CHECKING:
    from ..client.sync import Client

log = get_logger("hutch.web")

Probe = Callable[[], object]
"""A blocking call that returns when its part answers and raises when it does not."""

OK, UNAVAILABLE = "ok", "unavailable"
NO_STORE = {"Cache-Control": "no-store"}
"""Health answers describe this moment: no cache may keep them."""


def probes_of(client: Client) -> dict[str, Probe]:
    """The result store and the broker of ``client`` (the app's shared client)."""
    route = client.conf.task_default_queue
    return {"database": lambda: client.store.read_now("readiness check", _select_one),
            "broker": lambda: client.broker.queue_stats(route)}


def _select_one(conn: Connection) -> object:
    return conn.execute(text("SELECT 1")).scalar()


class Readiness:
    """Runs ``probes`` (name -> probe) together, each within ``timeout`` seconds."""

    def __init__(self, probes: Mapping[str, Probe], timeout: float) -> None:
        self.probes = dict(probes)
        self.timeout = timeout
        self._running: asyncio.Future[dict[str, bool]] | None = None
        self._probing: dict[str, asyncio.Future[object]] = {}
        self._failing: set[str] = set()  # parts that did not answer the last check

    async def check(self) -> dict[str, bool]:
        """Whether each part answers (name -> bool); joins a check already running."""
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._run())
        return await asyncio.shield(self._running)

    async def _run(self) -> dict[str, bool]:
        answers = await asyncio.gather(*(self._probe(name, probe)
                                         for name, probe in self.probes.items()))
        return dict(zip(self.probes, answers, strict=True))

    async def _probe(self, name: str, probe: Probe) -> bool:
        running = self._probing.get(name)
        if running is None or running.done():
            running = self._probing[name] = in_daemon_thread(probe, f"hutch-web-{name}")
        try:
            await asyncio.wait_for(asyncio.shield(running), self.timeout)
        except TimeoutError:
            return self._failed(name, f"no answer within {self.timeout:g} s")
        except HutchError as exc:
            return self._failed(name, str(exc))
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", no traceback
            return self._failed(name, f"{type(exc).__name__}: {exc}")
        if name in self._failing:
            self._failing.discard(name)
            log.info("web readiness: answers again", part=name)
        return True

    def _failed(self, name: str, why: str) -> bool:
        if name not in self._failing:
            self._failing.add(name)
            log.warning("web readiness: not answering", part=name, error=mask_secrets(why))
        return False


def in_daemon_thread(call: Probe, name: str) -> asyncio.Future[object]:
    """``call()`` in a daemon thread of its own; its outcome settles the future in the
    running loop (``asyncio.to_thread`` uses the loop's executor, whose threads the
    loop waits for when it closes: a stuck probe would hold up a stop)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[object] = loop.create_future()

    def settle(value: object, error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(value)
        else:
            future.set_exception(error)

    def run() -> None:
        value, error = None, None
        try:
            value = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the loop, raised there
            error = exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:  # the loop closed meanwhile: nobody waits any more
            pass

    threading.Thread(target=run, name=name, daemon=True).start()
    return future


def routes(readiness: Readiness) -> list[Route]:
    async def healthz(_: Request) -> JSONResponse:
        return JSONResponse({"status": OK}, headers=NO_STORE)

    async def readyz(_: Request) -> JSONResponse:
        checks = await readiness.check()
        ready = all(checks.values())
        return JSONResponse({"status": OK if ready else UNAVAILABLE,
                             "checks": {name: OK if answers else UNAVAILABLE
                                        for name, answers in checks.items()}},
                            status_code=200 if ready else 503, headers=NO_STORE)

    return [Route("/healthz", healthz, name="healthz"), Route("/readyz", readyz, name="readyz")]
