"""What each stop signal means to a worker process, and to a prefork child.

A worker of its own (threads, asyncio, solo) and a prefork supervisor: SIGTERM or
SIGINT is a warm shutdown (finish the running tasks), a second one is cold (exit at
once; unfinished tasks return to RabbitMQ), SIGQUIT is cold.

A prefork child obeys its supervisor only. A signal sent to the whole process
group reaches every child at the moment it reaches the supervisor: systemd's
default ``KillMode=control-group`` sends SIGTERM to every process of the unit, and
a terminal sends SIGINT to its foreground group on Ctrl-C. Were children to act
on it, the supervisor's relayed stop would be their second signal, a cold one,
and the running tasks would be abandoned. So children ignore SIGTERM and SIGINT,
and the supervisor asks them for a warm stop with :data:`WARM_STOP` (SIGUSR2), which
nothing sends to a group by accident (the supervisor ignores it), and for a cold one
with SIGKILL. SIGQUIT still stops a child
at once, wherever it comes from: it is cold in every case.

SIGUSR1 (dump every thread's stack) and SIGHUP (reload) mean the same in every
process (hutch.diagnostics); the supervisor relays them to its children, and a child
that hears one twice at once (from its group and from its supervisor) acts once.
SIGUSR1 was the warm stop of a child before: it is the stack dump everywhere now, so
``kill -USR1`` is harmless whichever process it reaches.

Why not tell the supervisor's SIGTERM from the group's by its sender (``si_pid``):
Python's handlers do not see the sender, and ``kill -TERM -- -PGID`` comes from
the same sender as ``kill -TERM CHILD``.

A child is forked with :data:`HELD` blocked (:func:`held`), so that nothing
arrives between ``fork`` and the child's own dispositions: the supervisor's Python
handlers, inherited by the child, would otherwise run there and signal its
siblings. :data:`WARM_STOP`, SIGUSR1 and SIGHUP stay blocked in a worker child until
the worker's handlers are in place (:func:`release_held`); one sent meanwhile waits,
it is not lost.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

from ..diagnostics import DUMP, RELOAD

WARM_STOP = signal.SIGUSR2
"""The supervisor's request to a child: finish the running task, then exit."""

GROUP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""Warm stops for a worker of its own; ignored by prefork children."""

GROW_SIGNAL, SHRINK_SIGNAL = signal.SIGTTIN, signal.SIGTTOU
"""A prefork supervisor's pool gains or loses one child (Celery's signals for it);
ignored by children and by the other pools."""

STOP_SIGNALS = (*GROUP_SIGNALS, signal.SIGQUIT, WARM_STOP)

HELD = (*STOP_SIGNALS, DUMP, RELOAD, GROW_SIGNAL, SHRINK_SIGNAL)
"""Blocked across ``fork``: every signal the supervisor has a handler for."""


@contextmanager
def held() -> Iterator[None]:
    """Block :data:`HELD` in the calling thread; they are delivered on leaving."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, HELD)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def as_worker_child() -> None:
    """In a just-forked prefork child (signals :func:`held`): ignore group-wide
    SIGTERM/SIGINT, die on SIGQUIT, and keep :data:`WARM_STOP`, SIGUSR1 and SIGHUP
    blocked until the worker installs its handlers."""
    for sig in (*GROUP_SIGNALS, GROW_SIGNAL, SHRINK_SIGNAL):
        signal.signal(sig, signal.SIG_IGN)
    for sig in (signal.SIGQUIT, WARM_STOP, DUMP, RELOAD):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK,
                           (*GROUP_SIGNALS, signal.SIGQUIT, GROW_SIGNAL, SHRINK_SIGNAL))


def as_sidecar_child() -> None:
    """In a just-forked sidecar (the embedded beat, stopped by the supervisor's
    SIGTERM): default dispositions, nothing blocked, until it installs its own
    (SIGUSR1 and SIGHUP ignored meanwhile: by default they would end it)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    for sig in (DUMP, RELOAD, GROW_SIGNAL, SHRINK_SIGNAL):
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD)


def release_held() -> None:
    """Deliver :data:`WARM_STOP`, SIGUSR1 and SIGHUP from now on (one sent before is
    delivered at once)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (WARM_STOP, DUMP, RELOAD))
