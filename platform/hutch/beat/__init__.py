"""beat: periodic schedules stored in the database, edited at runtime, one active beat.

``schedules``, ``crontab`` and ``entry`` are pure (kinds, next-run computation,
validation); ``models`` and ``store`` hold the tables and every statement on
them; ``service`` is the loop that sends due runs under the leader lease;
``api`` is ``app.schedules``. docs/beat.md is the guide.

Importing the package loads only pure modules, so hutch.config can validate
``beat_schedule`` with ``entry`` (the tables come with ``store``, which the
app's ``schedules`` imports).
"""

from .crontab import crontab
from .schedules import Clocked, Interval

__all__ = ["Clocked", "Interval", "crontab"]
