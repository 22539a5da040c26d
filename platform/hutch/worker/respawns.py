"""When the prefork supervisor starts a replacement for a child that exited.

A child that ran for a while (:data:`STEADY` seconds), or that the supervisor killed
itself (a hard time limit), is replaced after :data:`FIRST_PAUSE`. A child that
dies young cannot start, or fails again at once: its slot's pause doubles with each
young death, up to :data:`MAX_PAUSE`, so a child that cannot start costs one
attempt every half minute rather than a respawn storm, and recovers by itself when
what it needed comes back. A child that retired (``worker_max_tasks_per_child``,
``worker_max_memory_per_child``) is replaced at once.
"""

from __future__ import annotations

FIRST_PAUSE = 1.0
MAX_PAUSE = 30.0
STEADY = 10.0
"""A child that lived this long (seconds) had started fine: its slot's pause starts over."""


class Respawns:
    """The replacements due, by slot (a worker child's slot index, or the sidecar)."""

    def __init__(self) -> None:
        self._pause: dict[int | str, float] = {}
        self._due: dict[int | str, float] = {}

    def exited(self, key: int | str, lived: float, now: float, *, expected: bool = False) -> float:
        """Schedule ``key``'s replacement for a child that lived ``lived`` seconds;
        ``expected``: the supervisor killed it. Returns the pause."""
        previous = self._pause.get(key)
        young = lived < STEADY and not expected
        pause = min(previous * 2, MAX_PAUSE) if young and previous else FIRST_PAUSE
        self._pause[key] = pause
        self._due[key] = now + pause
        return pause

    def retired(self, key: int | str, now: float) -> None:
        """A child that exited on purpose (worker/recycling.py): replaced at once, and
        its slot's pause starts over (it is no crash)."""
        self._pause.pop(key, None)
        self._due[key] = now

    def due(self, now: float) -> list[int | str]:
        """The keys whose replacement should start now (each returned once)."""
        ready = [key for key, at in self._due.items() if at <= now]
        for key in ready:
            del self._due[key]
        return ready

    @property
    def pending(self) -> bool:
        return bool(self._due)
