"""beat: periodic schedules stored in the database, edited at runtime, one active beat.

The schedules themselves (kinds, next-run computation, validation) are pure
and live lower, in :mod:`hutch.schedules`, so settings can validate
``beat_schedule`` without importing beat. Here: ``models`` and ``store`` hold
the tables and every statement on them; ``service`` is the loop that sends due
runs under the leader lease; ``sender`` sends a claimed run; ``cleanup``
deletes expired results; ``api`` is ``app.schedules``. docs/beat.md is the guide.
"""

from ..schedules import Clocked, Interval, crontab

__all__ = ["Clocked", "Interval", "crontab"]
