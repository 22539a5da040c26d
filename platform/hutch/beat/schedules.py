"""Moved to :mod:`hutch.schedules.triggers`; kept only for the import of ``api``, which
another branch of issue #12 is editing. Delete once it imports ``hutch.schedules``."""

from ..schedules.triggers import load_zone, parse_at, parse_every

__all__ = ["load_zone", "parse_at", "parse_every"]
