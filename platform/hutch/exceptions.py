"""Celery's ``celery.exceptions`` names, for code that imports them from there: the same
classes as :mod:`hutch.errors`, which holds the whole tree (``from hutch.exceptions
import Reject, Ignore, Retry`` works as in Celery)."""

from .errors import *  # noqa: F403 - this module is only a second name for hutch.errors
from .errors import __all__  # noqa: F401 - the same public names
