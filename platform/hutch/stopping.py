"""Stopping a hutch process from a signal handler without deadlocking it.

A Python signal handler runs in the main thread between two bytecodes, possibly
while that thread is inside ``threading.Event.wait`` holding the event's internal
lock; ``Event.set()`` from the handler then waits for that lock for ever (a beat
once ignored SIGTERM this way). So handlers only count the signal and hand the
stopping itself to a short-lived thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


def stop_from_signal(stop: Callable[[], None]) -> None:
    """Run ``stop`` in a thread of its own, out of the signal handler's way."""
    threading.Thread(target=stop, name="hutch-stop", daemon=True).start()
