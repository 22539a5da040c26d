"""``hutch web``, the process: uvicorn serving hutch.web.app on the asyncio loop.

One process, one asyncio loop (the live views to come share it with aio-pika), and
the contract of every hutch service under systemd (``Type=notify``,
deploy/systemd/hutch-web.service; hutch.systemd):

- the bind rule first (hutch.web.security): nothing opens before it passes;
- the socket is bound here, before uvicorn starts, so an address in use or not
  allowed is one clear error (exit 2) rather than uvicorn's exit 1;
- ``READY=1`` with ``STATUS=listening on http://HOST:PORT/`` once uvicorn accepts
  connections on it (after its startup, never before the socket listens);
- ``WATCHDOG=1`` from a task of the serving loop: a loop blocked for
  ``WatchdogSec`` stops pinging, and systemd restarts the process;
- SIGTERM or SIGINT: ``STOPPING=1``, no new connections, the requests in flight
  finish (at most :data:`GRACE_SECONDS`), exit 0. A second one closes what is left
  at once (exit 1). uvicorn's own signal handling is left out: it re-raises the
  signal after a graceful stop, so the process would end by the signal, not 0.
- SIGUSR1 dumps every thread's stack, SIGHUP reloads what is safe (hutch.diagnostics).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import uvicorn

from .. import systemd
from ..diagnostics import Reloader, install
from ..errors import ConfigurationError
from ..logs import get_logger
from .app import create_app
from .security import auth_configured, check_bind

if TYPE_CHECKING:
    from ..app import Hutch

log = get_logger("hutch.web")

GRACE_SECONDS = 10
"""How long a stop waits for the requests in flight before closing them (well
under the unit's TimeoutStopSec=30)."""


def serve(hutch_app: Hutch) -> int:
    """Serve the dashboard of ``hutch_app`` on ``web_host:web_port`` under
    ``web_url_prefix`` until SIGTERM/SIGINT; the exit code."""
    conf = hutch_app.conf
    check_bind(conf.web_host, auth_configured(conf))
    sock = listen_socket(conf.web_host, conf.web_port)
    url = f"http://{_authority(sock)}{conf.web_url_prefix}/"
    config = uvicorn.Config(create_app(hutch_app), log_config=None, access_log=False,
                            server_header=False, timeout_graceful_shutdown=GRACE_SECONDS,
                            proxy_headers=False)  # hutch.web.csrf decides whom to believe
    server = WebServer(config, on_listening=lambda: _listening(url))
    install(Reloader(conf))
    try:
        return asyncio.run(_serve(server, sock))
    finally:
        sock.close()


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (the first address ``host`` resolves to)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, UnicodeError) as exc:
        raise ConfigurationError(f"web: cannot listen on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"web: cannot listen on {host}:{port}: "
                                 f"{exc.strerror or exc}") from None
    return sock


def _authority(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"


def _listening(url: str) -> None:
    log.info("web listening", url=url)
    systemd.ready(f"listening on {url}")


class WebServer(uvicorn.Server):
    """uvicorn's server with hutch's stop and readiness (the module's docstring)."""

    def __init__(self, config: uvicorn.Config, on_listening: Callable[[], None]) -> None:
        super().__init__(config)
        self.on_listening = on_listening

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Nothing: :func:`_serve` handles SIGTERM and SIGINT in the loop (:meth:`stop`)."""
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.on_listening()

    def stop(self, signum: int) -> None:
        """The first stop signal: graceful; the second: at once."""
        name = signal.Signals(signum).name
        if self.should_exit:
            log.warning("web stopping at once: open connections are closed", signal=name)
            self.force_exit = True
            return
        systemd.stopping("stopping: finishing the requests in flight")
        log.info("web stopping: finishing the requests in flight", signal=name,
                 grace=GRACE_SECONDS)
        self.should_exit = True


async def _serve(server: WebServer, sock: socket.socket) -> int:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop, signum)
    every = systemd.watchdog_interval()
    pinger = asyncio.create_task(ping_watchdog(every)) if every else None
    try:
        await server.serve(sockets=[sock])
    finally:
        if pinger is not None:
            pinger.cancel()
    log.info("web stopped")
    return 1 if server.force_exit else 0


async def ping_watchdog(every: float) -> None:
    """``WATCHDOG=1`` every ``every`` seconds for as long as the loop goes round."""
    while True:
        systemd.watchdog()
        await asyncio.sleep(every)
