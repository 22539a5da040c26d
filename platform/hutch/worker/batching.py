"""Taking the next batch off a writer thread's queue (the recorder, the claim writer):
everything waiting at that moment, so a write in flight makes the next one bigger."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def next_batch(source: queue.SimpleQueue[T | None], limit: int,
               urgent: Callable[[T], bool] = lambda _: True,
               linger: float = 0.0) -> list[T] | None:
    """Block for the first item, then take what else is waiting, up to ``limit``. While
    no item taken is ``urgent`` (nobody waits on it), wait up to ``linger`` seconds for
    more. None once the queue yields None (the writer stops; the None stays queued)."""
    first = source.get()
    if first is None:
        source.put(None)
        return None
    batch = [first]
    deadline = time.monotonic() + linger
    hurry = urgent(first)
    while len(batch) < limit:
        wait = 0.0 if hurry else deadline - time.monotonic()
        try:
            item = source.get(timeout=wait) if wait > 0 else source.get_nowait()
        except queue.Empty:
            break
        if item is None:
            source.put(None)
            break
        batch.append(item)
        hurry = hurry or urgent(item)
    return batch
