"""beat: periodic schedules stored in the database, edited at runtime, one active beat.

``schedules``, ``crontab`` and ``entry`` are pure (kinds, next-run computation,
validation); ``models`` and ``store`` hold the tables and every statement on
them; ``service`` is the loop that sends due runs under the leader lease;
``api`` is ``app.schedules``. docs/beat.md is the guide.
"""

from . import models as _models  # noqa: F401 - registers the tables on the shared metadata
from .crontab import crontab
from .schedules import Clocked, Interval

__all__ = ["Clocked", "Interval", "crontab"]
