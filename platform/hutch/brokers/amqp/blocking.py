"""A pika BlockingConnection waited on by one thread and stopped from another.

pika's blocking connection is not thread-safe: only ``add_callback_threadsafe`` may be
called from elsewhere. The consumer, the event subscriber and the reply inbox each
wait in ``process_data_events`` on their own thread; these two helpers are how the
rest of hutch ends such a wait and lets go of a connection that may already be broken.
"""

from __future__ import annotations

import pika


def wake(conn: pika.BlockingConnection | None) -> None:
    """End a ``process_data_events`` wait on ``conn`` now, from any thread, so a stop
    is seen at once rather than at the end of the waiter's poll interval."""
    try:
        if conn is not None:
            conn.add_callback_threadsafe(_nothing)
    except Exception:  # noqa: BLE001, S110 - the connection is closed: nothing waits on it
        pass


def close_quietly(conn: pika.BlockingConnection | None) -> None:
    """Close ``conn`` if it is still open; a connection already broken needs nothing."""
    try:
        if conn is not None and conn.is_open:
            conn.close()
    except Exception:  # noqa: BLE001, S110 - the connection is already broken
        pass


def _nothing() -> None:
    """The callback whose only effect is waking the waiting thread."""
