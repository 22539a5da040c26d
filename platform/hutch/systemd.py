"""systemd's notify protocol (``Type=notify``), in a few lines and no dependency.

A service tells systemd it is ready (``READY=1``), what it is doing (``STATUS=``),
that it is stopping (``STOPPING=1``) and that it is alive (``WATCHDOG=1``) by
sending datagrams to the AF_UNIX socket named in ``NOTIFY_SOCKET``; a path that
starts with ``@`` is in the abstract namespace. Without ``NOTIFY_SOCKET`` (not
under systemd, or ``Type=simple``) every call here does nothing, so hutch
processes call them unconditionally.

Only the main process may notify (the units set ``NotifyAccess=main``): a prefork
supervisor or a beat. Forked children drop ``NOTIFY_SOCKET`` (:func:`forget`) so
nothing they run can send in their name.

``WATCHDOG_USEC`` (set by ``WatchdogSec=``) is how long systemd waits for a ping
before it kills and restarts the service; :func:`watchdog_interval` is half of
it, the usual pace of pings, and ``None`` when this process has no watchdog
(none configured, or ``WATCHDOG_PID`` names another process).
"""

from __future__ import annotations

import os
import socket
import threading
import time

ENV_SOCKET = "NOTIFY_SOCKET"


def notify(*fields: str) -> bool:
    """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one message; False when there is
    no socket to send to or the send failed (systemd gone: nothing to do about it)."""
    path = os.environ.get(ENV_SOCKET)
    if not path or not fields:
        return False
    address = "\0" + path[1:] if path.startswith("@") else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode(), address)
    except OSError:
        return False
    return True


def ready(status: str | None = None) -> bool:
    return notify("READY=1", *([f"STATUS={status}"] if status else []))


def status(text: str) -> bool:
    return notify(f"STATUS={text}")


def stopping(status: str | None = None) -> bool:
    return notify("STOPPING=1", *([f"STATUS={status}"] if status else []))


def watchdog() -> bool:
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds between two pings (half of ``WATCHDOG_USEC``), or None: no watchdog for
    this process."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


def forget() -> None:
    """In a forked child: never notify (``NotifyAccess=main`` would refuse it anyway)."""
    for name in (ENV_SOCKET, "WATCHDOG_USEC", "WATCHDOG_PID"):
        os.environ.pop(name, None)


class Watchdog:
    """Pings at :func:`watchdog_interval` while its owner's loop goes round: the loop
    calls :meth:`alive` (cheap) whenever it has shown it is not stuck, and waits with
    :meth:`wait`, so that a long pause between two rounds still pings in time."""

    def __init__(self) -> None:
        self.every = watchdog_interval()
        self._last = 0.0

    def alive(self) -> None:
        """Ping, unless one was sent less than :attr:`every` ago (or no watchdog)."""
        if self.every is None:
            return
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            watchdog()

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """``event.wait(seconds)``, pinging meanwhile; whether the event is set."""
        deadline = time.monotonic() + seconds
        while not event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.alive()
            event.wait(left if self.every is None else min(left, self.every))
        return True
