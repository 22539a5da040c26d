"""Every exception hutch defines sits in the one tree rooted at HutchError, and
errors.py exports it (httpx's rule: one place to look, one root to catch)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import hutch
from hutch import errors

INTERNAL = {
    "hutch.beat.store._Lost": "rolls back a schedule claim's transaction and is caught "
                              "around it; it never leaves BeatStore.claim",
}
"""Exceptions that are control flow inside one module, with the reason they are not
exported. They still derive from HutchError."""

NOT_IMPORTED = ("hutch.__main__", "hutch.migrations")
"""``python -m hutch`` runs the CLI on import; alembic's env.py needs alembic's context."""


def _defined_exceptions() -> dict[str, type[BaseException]]:
    found = {}
    for module_info in pkgutil.walk_packages(hutch.__path__, "hutch."):
        if module_info.name.startswith(NOT_IMPORTED):
            continue
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, BaseException) \
                    and value.__module__ == module.__name__:
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return found


def test_every_exception_hutch_defines_derives_from_hutch_error():
    found = _defined_exceptions()
    assert "hutch.errors.HutchError" in found and len(found) > 20  # the walk saw the package
    outside = sorted(name for name, kind in found.items()
                     if kind is not errors.HutchError and not issubclass(kind, errors.HutchError))
    assert outside == []


def test_every_exception_lives_in_errors_and_is_exported():
    found = _defined_exceptions()
    elsewhere = sorted(name for name, kind in found.items()
                       if kind.__module__ != "hutch.errors" and name not in INTERNAL)
    assert elsewhere == []
    in_errors = {kind.__name__ for kind in found.values() if kind.__module__ == "hutch.errors"}
    assert set(errors.__all__) == in_errors
    assert set(INTERNAL) <= set(found)  # a listed exception that is gone leaves the list


def test_the_tree_in_the_docstring_draws_every_exported_error():
    drawn = set(re.findall(r"[├└]── (\w+)", errors.__doc__ or ""))
    assert drawn | {"HutchError"} == set(errors.__all__)


def test_what_users_catch_is_exported_from_hutch():
    for name in ("HutchError", "TimeoutError", "TaskRevokedError", "TaskFailure", "ChordError",
                 "BrokerError", "BrokerUnavailable", "BackendError", "NotRegistered", "Retry",
                 "MaxRetriesExceededError", "SoftTimeLimitExceeded"):
        assert getattr(hutch, name) is getattr(errors, name)
