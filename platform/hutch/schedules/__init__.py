"""Schedule kinds, as Celery's ``celery.schedules``: ``from hutch.schedules import crontab``.

Pure code (no I/O, no tables), below every layer that uses it: ``cron`` (the
crontab kind), ``triggers`` (interval, crontab and clocked triggers, their
next-run computation) and ``entry`` (one schedule validated, as a
``hutch_schedules`` row holds it). Settings validate ``beat_schedule`` with
``entry``; beat stores, reads and sends schedules built by it.
"""

from .cron import crontab
from .triggers import Clocked, Interval

__all__ = ["Clocked", "Interval", "crontab"]
