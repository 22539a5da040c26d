"""Finding task modules: the ``imports``/``include`` settings and ``app.autodiscover_tasks``.

A worker runs only tasks whose modules were imported. Celery's two ways to name them
are kept: the settings list modules, and ``autodiscover_tasks(["shop", "billing"])``
imports ``shop.tasks`` and ``billing.tasks`` (any that exist), with Django's installed
apps as the packages when none are given. Both happen when the app is finalized
(:meth:`hutch.Hutch.finalize`: ``hutch -A``, the worker, beat), not on the line that
asks, because the packages (Django's apps above all) may not be importable yet there.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable
from types import ModuleType

from . import signals
from .errors import ConfigurationError

Packages = Iterable[str] | Callable[[], Iterable[str]] | None
"""What ``autodiscover_tasks`` takes: package names, a function returning them (read at
discovery), or None for Django's installed apps."""


def import_modules(names: Iterable[str], setting: str) -> list[ModuleType]:
    """Import each module ``setting`` (``imports``, ``include``) lists; one that cannot be
    imported is a ConfigurationError naming it and the setting."""
    return [_import(name, setting) for name in names]


def discover(packages: Packages, related_name: str | None = "tasks") -> list[ModuleType]:
    """``package.related_name`` of each package that has one (the package itself when
    ``related_name`` is None or empty). A package that does not exist is an error; one
    without that module is skipped, as in Celery."""
    names = list(packages() if callable(packages) else packages) if packages is not None \
        else django_apps()
    found = [_related(package, related_name) for package in names]
    return [module for module in found if module is not None]


def _related(package: str, related_name: str | None) -> ModuleType | None:
    module = _import(package, "autodiscover_tasks")
    if not related_name:
        return module
    name = f"{package}.{related_name}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:  # no such module in the package: nothing to discover there
            return None
        raise _failed(name, "autodiscover_tasks", exc) from exc
    except Exception as exc:  # noqa: BLE001 - any import-time error, named with its module
        raise _failed(name, "autodiscover_tasks", exc) from exc


def django_apps() -> list[str]:
    """The modules of Django's installed apps (``django.setup()`` first if it has not
    run: a worker is not a Django process until then). Needs Django configured."""
    try:
        import django
        from django.apps import apps
        from django.conf import settings
    except ImportError:
        raise ConfigurationError("autodiscover_tasks(): give the packages to search; with "
                                 "none, Django's installed apps are searched, and Django "
                                 "is not installed") from None
    if not settings.configured and not os.environ.get("DJANGO_SETTINGS_MODULE"):
        raise ConfigurationError("autodiscover_tasks(): give the packages to search, or set "
                                 "DJANGO_SETTINGS_MODULE to discover Django's installed apps")
    if not apps.ready:
        django.setup()
    return [config.name for config in apps.get_app_configs()]


def setup_django() -> bool:
    """``django.setup()`` when ``DJANGO_SETTINGS_MODULE`` is set and Django is installed
    (Celery's Django fix-up does the same when a worker starts), so task modules may
    import models whichever way they are found; True if Django is set up."""
    if not os.environ.get("DJANGO_SETTINGS_MODULE"):
        return False
    try:
        import django
        from django.apps import apps
    except ImportError:
        return False
    if not apps.ready:
        django.setup()
    _close_stale_django_connections()
    return True


def _close_stale_django_connections() -> None:
    """Before and after each task, close the Django database connections that are past
    their ``CONN_MAX_AGE`` or broken, as Django does around each request and Celery's
    Django fix-up around each task: a worker is a long-lived process, and a connection
    the database dropped overnight would otherwise fail the next morning's tasks."""
    for signal, uid in ((signals.task_prerun, "hutch.django.prerun"),
                        (signals.task_postrun, "hutch.django.postrun")):
        signal.connect(_close_old_connections, weak=False, dispatch_uid=uid)


def _close_old_connections(**_: object) -> None:
    from django.db import close_old_connections
    close_old_connections()


def _import(name: str, setting: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - any import-time error, named with its module
        raise _failed(name, setting, exc) from exc


def _failed(name: str, setting: str, exc: BaseException) -> ConfigurationError:
    return ConfigurationError(f"{setting}: cannot import {name!r} "
                              f"({type(exc).__name__}: {exc})")
