"""``hutch events``: task events as they happen; registered on the main group by hutch.cli.main.

Events sent before the command subscribed are not shown (they are for live views;
``hutch result`` and the tables are the record). Once subscribed it says so on
stderr, so a script may start it, wait for that line, then submit. Ctrl-C (or SIGTERM)
ends it with exit code 0; so does reaching ``--count``.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from ..config import mask_url
from ..errors import ConfigurationError
from ..ops.events import EventFilter, EventReceiver, describe

WAIT_STEP = 0.25
"""Seconds between looks for a stop while no event comes."""


@click.command()
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line (the event plus local_received).")
@click.option("--dump", is_flag=True,
              help="For scripts: each event as sent, one compact JSON line, flushed.")
@click.option("--task", "tasks", multiple=True, metavar="NAME",
              help="Only this task (a glob such as 'tasks.*'; repeatable).")
@click.option("--state", "--type", "types", multiple=True, metavar="TYPE",
              help="Only these events: task-failed, failed or FAILURE (repeatable).")
@click.option("--worker", "workers", multiple=True, metavar="HOSTNAME",
              help="Only events sent by this worker (name@host, a glob; repeatable).")
@click.option("-n", "--count", type=click.IntRange(min=1), default=None,
              help="Exit after this many events.")
@click.pass_obj
def events(obj: Any, as_json: bool, dump: bool, tasks: tuple[str, ...],
           types: tuple[str, ...], workers: tuple[str, ...], count: int | None) -> None:
    """Print task events live, one line each, until Ctrl-C."""
    try:
        keep = EventFilter(tasks, types, workers)
    except ValueError as exc:
        raise ConfigurationError(f"--state/--type: {exc}") from None
    app = obj.app
    client = app.client()
    seen = 0
    try:
        with EventReceiver(client.broker, keep=keep, raw=dump) as receiver, \
                _stopped_by_signals() as stop:
            click.echo(f"listening for task events on {mask_url(app.conf.broker_url)} "
                       f"(Ctrl-C to stop)", err=True)
            while not stop.is_set() and (count is None or seen < count):
                event = receiver.next_event(WAIT_STEP)
                if event is not None:
                    _show(event, as_json or dump)
                    seen += 1
    except KeyboardInterrupt:  # before the handlers are in place
        pass
    finally:
        client.close()


@contextmanager
def _stopped_by_signals() -> Iterator[threading.Event]:
    """An event set by Ctrl-C (SIGINT) or SIGTERM. The loop ends between events: a
    KeyboardInterrupt raised inside the receiver's queue or pika could leave a lock
    held and the exit waiting on it."""
    stop = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    before = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
    try:
        yield stop
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _show(event: dict[str, Any], as_json: bool) -> None:
    line = json.dumps(event, separators=(",", ":"), default=str) if as_json \
        else describe(event)
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
