"""Moved to :mod:`hutch.schedules.entry`; kept only for the imports of ``service`` and
``api``, which another branch of issue #12 is editing. Delete once they import
``hutch.schedules`` directly."""

from ..schedules.entry import CATCH_UP_LIMIT, DEFINITION_FIELDS, Plan, Schedule, build, from_config

__all__ = ["CATCH_UP_LIMIT", "DEFINITION_FIELDS", "Plan", "Schedule", "build", "from_config"]
