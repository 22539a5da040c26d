"""Waiting for something another process does, with a deadline instead of a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(condition: Callable[[], T], timeout: float = 10.0) -> T:
    """Poll ``condition`` until it holds or ``timeout`` passes; returns its last value
    (the first true one: a row, a list of children), falsy when time ran out."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() >= deadline:
            return value
        time.sleep(0.05)
    return value
