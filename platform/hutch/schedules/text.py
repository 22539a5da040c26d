"""Schedule fields from text: what ``hutch schedule add|edit`` and the dashboard's
schedule form share (JSON arguments, whole numbers, times in a zone)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..errors import ConfigurationError
from .triggers import load_zone, parse_at


def fields_from_text(given: Mapping[str, Any], default_timezone: str) -> dict[str, Any]:
    """Text as typed (``hutch schedule add`` options, the dashboard's form) to
    ``app.schedules`` keywords: JSON, whole numbers and datetimes are parsed here, the
    rest is checked by the beat API. Errors name the CLI option (``--start-at: ...``);
    hutch.ops.schedules.field_of maps them to form fields."""
    from_json = {"args_json": ("args", list, "a JSON list"),
                 "kwargs_json": ("kwargs", dict, "a JSON object"),
                 "options_json": ("options", dict, "a JSON object")}
    kinds = [f"--{key}" for key in ("every", "cron", "at") if given.get(key) is not None]
    if len(kinds) > 1:
        raise ConfigurationError(f"{' and '.join(kinds)}: give only one of --every, --cron, "
                                 f"--at")
    fields: dict[str, Any] = {}
    for key, value in given.items():
        if value is None:
            continue
        if key in from_json:
            name, kind, what = from_json[key]
            fields[name] = _json(value, f"--{name}", kind, what)
        else:
            fields[key] = value
    if "catch_up_limit" in fields:
        fields["catch_up_limit"] = _whole(fields["catch_up_limit"], "--catch-up-limit")
    zone = fields.get("timezone") or default_timezone
    for key in ("start_at", "end_at"):
        if key in fields:
            fields[key] = _datetime(fields[key], zone, f"--{key.replace('_', '-')}")
    return fields


def _json(text: str, option: str, kind: type, what: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{option}: not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, kind):
        raise ConfigurationError(f"{option}: expected {what}, got {text!r}")
    return value


def _whole(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigurationError(f"{option}: expected a whole number, got {text!r}") from None


def _datetime(text: str, zone_name: str, option: str) -> Any:
    return parse_at(text, load_zone(zone_name, "--tz"), option)
