"""The settings file: which one is read, and its TOML as one flat mapping of names.

What the names mean, and whether the values are valid, is hutch.config's business;
this module only finds and parses the file, so that what "the file" is stays in
one place for the settings, ``hutch config show`` and ``hutch config check``.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from typing import Any

from .errors import ConfigurationError

DEFAULT_PATH = "/etc/hutch/hutch.toml"
"""Read when it exists; where the systemd units in ``deploy/`` expect the settings."""
PATH_VARIABLE = "HUTCH_CONFIG"
"""Names another file, which must then exist (``hutch --config PATH`` sets it)."""
TABLE = "hutch"
"""The table that holds the settings; keys at the top level are read as well."""


def locate(environ: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """The file to read and whether it must exist: ``$HUTCH_CONFIG`` (must), else
    the default path (optional: a host without one runs on env vars and code)."""
    environ = os.environ if environ is None else environ
    given = environ.get(PATH_VARIABLE, "")
    return (given, True) if given else (DEFAULT_PATH, False)


def read(path: str, required: bool) -> dict[str, Any] | None:
    """The settings the file holds, by name as written; None when an optional file
    is missing. A file that cannot be read or parsed is a ConfigurationError."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        if required:
            raise ConfigurationError(f"file {path}: no such file") from None
        return None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"file {path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigurationError(f"file {path}: cannot read it ({exc.strerror})") from None
    return flatten(path, document)


def flatten(path: str, document: dict[str, Any]) -> dict[str, Any]:
    """The ``[hutch]`` table and the top-level keys as one mapping; a name given in
    both places is an error rather than a silent choice."""
    table = document.get(TABLE, {})
    if not isinstance(table, dict):
        raise ConfigurationError(f"file {path}: [{TABLE}] must be a table, got {table!r}")
    top = {key: value for key, value in document.items() if key != TABLE}
    twice = sorted(set(top) & set(table))
    if twice:
        raise ConfigurationError(f"file {path}: {', '.join(twice)} set both at the top level "
                                 f"and in [{TABLE}]; keep one")
    return {**top, **table}
