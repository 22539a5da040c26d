"""beat: periodic schedules stored in the database, edited at runtime, one active beat.

``schedules`` and ``crontab`` are pure (kinds and next-run computation);
``models`` and ``store`` hold the tables and every statement on them; ``lease``
elects the active beat; ``service`` is the loop that sends due runs; ``api`` is
``app.schedules``. docs/beat.md is the guide.
"""

from .crontab import crontab
from .schedules import Clocked, Interval

__all__ = ["Clocked", "Interval", "crontab"]
