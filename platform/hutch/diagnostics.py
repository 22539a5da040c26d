"""SIGUSR1 and SIGHUP in a long-running hutch process (worker, prefork child, beat).

- :data:`DUMP` (SIGUSR1) logs the stack of every thread of the process, one line
  each (``thread stack``, WARNING, so it shows at any usual level): what a stuck
  worker is doing, without stopping it.
- :data:`RELOAD` (SIGHUP) reads the settings' sources again and applies what is
  safe to change in a running process (:data:`RELOADABLE`: the log level and the
  rate-limit switch), and names the changed settings it did not apply (they need
  a restart).

Both run in a short-lived thread, never in the signal handler itself (logging or
taking a lock there can deadlock the main thread: hutch.stopping). A prefork
supervisor relays both to its children (worker/prefork.py); a child hearing the
same signal twice within :data:`REPEAT_WINDOW` (from its group and from the
supervisor) acts once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from .config import Settings
from .errors import HutchError
from .logs import get_logger

log = get_logger("hutch.process")

DUMP = signal.SIGUSR1
RELOAD = signal.SIGHUP
REPEAT_WINDOW = 1.0
"""Seconds within which a second DUMP or RELOAD is the same request heard twice."""

RELOADABLE = ("log_level", "worker_disable_rate_limits")
"""Settings a running process takes from a reload: read where they are used, per log
line or per task. Every other setting is built into connections, pools or queues."""


def dump_stacks() -> None:
    """Log every thread's current stack."""
    names = {t.ident: t.name for t in threading.enumerate()}
    frames = sys._current_frames()
    pid = os.getpid()
    for ident, frame in frames.items():
        log.warning("thread stack", pid=pid, thread=names.get(ident, "?"), thread_id=ident,
                    stack="".join(traceback.format_stack(frame)))
    log.warning("thread stacks dumped", pid=pid, threads=len(frames))


class Reloader:
    """Applies to ``conf`` what changed in its sources since the last read.

    ``reread`` builds the settings from the sources that can change under a running
    process (by default :meth:`Settings.build`: defaults and ``HUTCH_*`` variables,
    and whatever else that reads). What a source says is compared with what it said
    before, not with ``conf``: a value given on the command line, or set by the
    application's code, stays until its source changes."""

    def __init__(self, conf: Settings, reread: Callable[[], Settings] = Settings.build) -> None:
        self.conf = conf
        self.reread = reread
        self._seen = self._read()

    def _read(self) -> dict[str, Any]:
        fresh = self.reread()
        return {f.name: getattr(fresh, f.name) for f in dataclasses.fields(fresh)}

    def reload(self) -> dict[str, Any]:
        """Apply the reloadable changes; returns them (name -> new value)."""
        try:
            now = self._read()
        except HutchError as exc:
            log.error("settings not reloaded: their sources are not valid; nothing changed",
                      error=str(exc))
            return {}
        changed = {name for name, value in now.items() if self._seen.get(name) != value}
        self._seen = now
        applied = {name: now[name] for name in sorted(changed) if name in RELOADABLE}
        for name, value in applied.items():
            setattr(self.conf, name, value)
        if "log_level" in applied:
            logging.getLogger().setLevel(self.conf.log_level)
        log.info("settings reloaded", pid=os.getpid(), applied=applied,
                 not_reloaded=sorted(changed - set(applied)),
                 reloadable=list(RELOADABLE))
        return applied


class Once:
    """Runs ``action`` in a thread of its own, unless it ran less than
    :data:`REPEAT_WINDOW` ago."""

    def __init__(self, action: Callable[[], object]) -> None:
        self.action = action
        self._last = -REPEAT_WINDOW

    def __call__(self, *_: object) -> None:
        now = time.monotonic()
        if now - self._last < REPEAT_WINDOW:
            return
        self._last = now
        threading.Thread(target=self.action, name="hutch-signal", daemon=True).start()


def install(reloader: Reloader | None,
            before: Callable[[], None] = lambda: None,
            relay: Callable[[signal.Signals], None] = lambda sig: None) -> None:
    """DUMP and RELOAD handlers for this process (main thread only). ``before`` runs
    first in the handler (a prefork child checks whether it is terminating itself);
    ``relay`` passes the signal on (a supervisor to its children). Without a reloader,
    RELOAD is ignored (a process with no settings of its own to reload)."""
    dump, reload = Once(dump_stacks), Once(reloader.reload if reloader else lambda: None)

    def on(action: Once) -> Callable[[int, object], None]:
        def handler(signum: int, _: object) -> None:
            before()
            action()
            relay(signal.Signals(signum))
        return handler

    signal.signal(DUMP, on(dump))
    signal.signal(RELOAD, on(reload) if reloader else signal.SIG_IGN)
