"""Find the app named by ``-A`` (``proj``, ``proj.tasks``, ``proj:app`` or ``proj.tasks:app``)
and the settings file named by ``--config``; the :class:`Context` every command gets,
which loads the app with the global flags applied and sets up the process's output."""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from .. import logs, signals
from ..app import Hutch
from ..config_file import PATH_VARIABLE
from ..errors import ConfigurationError


def load_app(spec: str) -> Hutch:
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise ConfigurationError(f"-A {spec}: no module named {exc.name!r}") from None
        raise ConfigurationError(f"-A {spec}: importing it failed: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any import-time error becomes one clear line
        raise ConfigurationError(
            f"-A {spec}: importing it failed: {type(exc).__name__}: {exc}") from None
    if attr:
        app = getattr(module, attr, None)
        if not isinstance(app, Hutch):
            raise ConfigurationError(f"-A {spec}: {attr!r} is not a hutch app")
        return app
    for name in ("app", "hutch"):
        candidate = getattr(module, name, None)
        if isinstance(candidate, Hutch):
            return candidate
    found = [v for v in vars(module).values() if isinstance(v, Hutch)]
    if len(found) == 1:
        return found[0]
    raise ConfigurationError(f"-A {spec}: the module defines no hutch app (expected "
                             f"`app = Hutch(...)`)" if not found else
                             f"-A {spec}: several apps; name one as {spec}:NAME")


def use_config_file(ctx: click.Context, param: click.Parameter, path: str | None) -> None:
    """``--config PATH``: read settings from PATH instead of /etc/hutch/hutch.toml.

    Given to the process as ``$HUTCH_CONFIG`` before the app is imported, because the
    app's module builds its settings when it runs ``Hutch(...)``; prefork children and
    an embedded beat inherit it. The path is made absolute so that ``config show``
    names the file that was read whatever the working directory."""
    if path:
        os.environ[PATH_VARIABLE] = os.path.abspath(path)


CONFIG_OPTION = click.option(
    "--config", metavar="PATH", expose_value=False, is_eager=True, callback=use_config_file,
    help="Settings file (TOML) to read instead of /etc/hutch/hutch.toml; "
         "it must exist (same as HUTCH_CONFIG=PATH).")
"""The ``--config`` option, on ``hutch`` itself and on ``hutch config show/check``."""


ONE_SHOT_LOG_LEVEL = "WARNING"
"""Log level of commands that do one thing and exit (submit, result, db ...) unless -l is
given: their output is what they print, plus the one error line; connection retries are
logged below it. Long-running processes (worker, beat) use ``log_level``."""


class Context:
    def __init__(self, app_spec: str | None, broker: str | None, backend: str | None,
                 loglevel: str | None, log_format: str | None) -> None:
        self.app_spec, self.broker, self.backend = app_spec, broker, backend
        self.loglevel, self.log_format = loglevel, log_format
        self.long_running = False
        """Set by worker, beat and web before the app is loaded: they log at
        ``log_level``."""
        self._app: Hutch | None = None

    @property
    def app(self) -> Hutch:
        if self._app is None:
            app = load_app(self.app_spec) if self.app_spec else Hutch()
            if self.app_spec:
                signals.import_modules.send(app)
            if self.broker:
                app.conf.set_from("flag --broker", broker_url=self.broker)
            if self.backend:
                app.conf.set_from("flag --backend", result_backend=self.backend)
            if self.loglevel:
                app.conf.set_from("flag --loglevel", log_level=self.loglevel)
            if self.log_format:
                app.conf.set_from("flag --log-format", log_format=self.log_format)
            level = app.conf.log_level if self.long_running or self.loglevel \
                else ONE_SHOT_LOG_LEVEL
            set_up_logging(level, app.conf.log_format)
            app.finalize()  # imports, include, autodiscover_tasks: the worker's tasks
            self._app = app
        return self._app


def set_up_logging(level: str, fmt: str) -> None:
    """The process's log output: hutch's (hutch.logs.configure), unless a receiver of
    ``setup_logging`` is connected, which then does it all, as in Celery; after hutch's,
    ``after_setup_logger`` lets receivers add to it (a handler, a filter)."""
    details = {"loglevel": logging.getLevelNamesMapping().get(level.upper(), level),
               "logfile": None, "format": fmt,
               "colorize": fmt == "console" or (fmt == "auto" and sys.stderr.isatty())}
    if signals.setup_logging.send(None, **details):
        return
    logs.configure(level, fmt)
    signals.after_setup_logger.send(None, logger=logging.getLogger(), **details)
