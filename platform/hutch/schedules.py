"""``from hutch.schedules import crontab``: Celery's import path for schedule kinds."""

from .beat.crontab import crontab
from .beat.schedules import Clocked, Interval

__all__ = ["Clocked", "Interval", "crontab"]
