"""Moved to :mod:`hutch.schedules.cron`; kept only for the import of ``api``, which
another branch of issue #12 is editing. Delete once it imports ``hutch.schedules`` (and take
``crontab`` in ``__init__`` from there too)."""

from ..schedules.cron import crontab

__all__ = ["crontab"]
