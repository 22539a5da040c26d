"""Celery's setting names, old and new, and what each one is in hutch.

A Celery project moves to hutch by changing imports; its settings keep working:
``Hutch(...)``, ``app.conf.update(...)``, ``app.conf.X = ...`` and
``app.config_from_object(...)`` accept Celery's names and resolve them here.

Two tables, both plain data (docs/celery.md is the same table for people):

* :data:`OLD_NAMES`: Celery's old upper-case names (``CELERY_RESULT_BACKEND``,
  ``CELERYD_PREFETCH_MULTIPLIER``...) and the current Celery name of each, after
  Celery's own rename table (celery/app/defaults.py).
* :data:`CELERY_NAMES`: current Celery names that are not a hutch setting of the same
  name: the hutch setting they mean, or :class:`Refused` with the reason.

A hutch setting of the same name needs no entry: hutch's settings are Celery's
lower-case names. A name that resolves through a table warns once per name and
process (:class:`hutch.errors.CeleryNameWarning`, a ``UserWarning`` as Celery's own
deprecation warnings are, so it shows without configuring anything and ``-W error``
turns it into a failure in CI).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .errors import CeleryNameWarning, ConfigurationError


@dataclass(frozen=True)
class Refused:
    """A Celery setting hutch has no meaning for, and why."""

    reason: str


_RESULTS_IN_SQL = ("results live in SQL in hutch; use result_backend='postgresql://...' "
                   "or 'sqlite:///...'")
_POOLS = ("hutch runs prefork, threads, asyncio or solo pools; for I/O-bound tasks use "
          "worker_pool='threads' or 'asyncio'")

OLD_NAMES: dict[str, str] = {
    # top level and the app
    "CELERY_ACCEPT_CONTENT": "accept_content",
    "CELERY_IMPORTS": "imports",
    "CELERY_INCLUDE": "include",
    "CELERY_TIMEZONE": "timezone",
    "CELERY_ENABLE_UTC": "enable_utc",
    # broker
    "BROKER_URL": "broker_url",
    "BROKER_FAILOVER_STRATEGY": "broker_failover_strategy",
    "BROKER_HOST": "broker_host",
    "BROKER_TRANSPORT": "broker_transport",
    "BROKER_TRANSPORT_OPTIONS": "broker_transport_options",
    "BROKER_CONNECTION_TIMEOUT": "broker_connection_timeout",
    "BROKER_CONNECTION_RETRY": "broker_connection_retry",
    "BROKER_CONNECTION_MAX_RETRIES": "broker_connection_max_retries",
    "BROKER_HEARTBEAT": "broker_heartbeat",
    "BROKER_POOL_LIMIT": "broker_pool_limit",
    "BROKER_USE_SSL": "broker_use_ssl",
    # beat
    "CELERYBEAT_SCHEDULE": "beat_schedule",
    "CELERYBEAT_SCHEDULER": "beat_scheduler",
    "CELERYBEAT_SCHEDULE_FILENAME": "beat_schedule_filename",
    "CELERYBEAT_MAX_LOOP_INTERVAL": "beat_max_loop_interval",
    "CELERYBEAT_SYNC_EVERY": "beat_sync_every",
    # results
    "CELERY_RESULT_BACKEND": "result_backend",
    "CELERY_RESULT_SERIALIZER": "result_serializer",
    "CELERY_RESULT_COMPRESSION": "result_compression",
    "CELERY_RESULT_PERSISTENT": "result_persistent",
    "CELERY_RESULT_EXCHANGE": "result_exchange",
    "CELERY_TASK_RESULT_EXPIRES": "result_expires",
    "CELERY_MAX_CACHED_RESULTS": "result_cache_max",
    "CELERY_RESULT_DBURI": "database_url",
    "CELERY_RESULT_ENGINE_OPTIONS": "database_engine_options",
    "CELERY_RESULT_DB_TABLENAMES": "database_table_names",
    "CELERY_RESULT_DB_SHORT_LIVED_SESSIONS": "database_short_lived_sessions",
    # tasks
    "CELERY_ACKS_LATE": "task_acks_late",
    "CELERY_ALWAYS_EAGER": "task_always_eager",
    "CELERY_EAGER_PROPAGATES_EXCEPTIONS": "task_eager_propagates",
    "CELERY_ANNOTATIONS": "task_annotations",
    "CELERY_MESSAGE_COMPRESSION": "task_compression",
    "CELERY_CREATE_MISSING_QUEUES": "task_create_missing_queues",
    "CELERY_DEFAULT_QUEUE": "task_default_queue",
    "CELERY_DEFAULT_EXCHANGE": "task_default_exchange",
    "CELERY_DEFAULT_EXCHANGE_TYPE": "task_default_exchange_type",
    "CELERY_DEFAULT_ROUTING_KEY": "task_default_routing_key",
    "CELERY_DEFAULT_DELIVERY_MODE": "task_default_delivery_mode",
    "CELERY_DEFAULT_RATE_LIMIT": "task_default_rate_limit",
    "CELERY_IGNORE_RESULT": "task_ignore_result",
    "CELERY_QUEUES": "task_queues",
    "CELERY_ROUTES": "task_routes",
    "CELERY_SEND_TASK_SENT_EVENT": "task_send_sent_event",
    "CELERY_TASK_SERIALIZER": "task_serializer",
    "CELERY_TASK_PROTOCOL": "task_protocol",
    "CELERY_TASK_PUBLISH_RETRY": "task_publish_retry",
    "CELERY_TASK_PUBLISH_RETRY_POLICY": "task_publish_retry_policy",
    "CELERY_TRACK_STARTED": "task_track_started",
    "CELERY_STORE_ERRORS_EVEN_IF_IGNORED": "task_store_errors_even_if_ignored",
    "CELERYD_TASK_TIME_LIMIT": "task_time_limit",
    "CELERYD_TASK_SOFT_TIME_LIMIT": "task_soft_time_limit",
    # workers
    "CELERYD_CONCURRENCY": "worker_concurrency",
    "CELERYD_POOL": "worker_pool",
    "CELERYD_PREFETCH_MULTIPLIER": "worker_prefetch_multiplier",
    "CELERYD_MAX_TASKS_PER_CHILD": "worker_max_tasks_per_child",
    "CELERYD_MAX_MEMORY_PER_CHILD": "worker_max_memory_per_child",
    "CELERYD_AUTOSCALER": "worker_autoscaler",
    "CELERYD_STATE_DB": "worker_state_db",
    "CELERYD_HIJACK_ROOT_LOGGER": "worker_hijack_root_logger",
    "CELERYD_LOG_FORMAT": "worker_log_format",
    "CELERYD_TASK_LOG_FORMAT": "worker_task_log_format",
    "CELERY_SEND_EVENTS": "worker_send_task_events",
    "CELERY_DISABLE_RATE_LIMITS": "worker_disable_rate_limits",
    "CELERY_ENABLE_REMOTE_CONTROL": "worker_enable_remote_control",
    "CELERY_WORKER_DIRECT": "worker_direct",
    "CELERY_REDIRECT_STDOUTS": "worker_redirect_stdouts",
}
"""Celery's old upper-case name -> its current Celery name."""

PLANNED: frozenset[str] = frozenset()
"""Celery settings issue #15 is adding to hutch. Until one is a hutch setting, giving
it is an error that says so; once it is, it resolves like any setting."""

_SQL = "the database is the result backend: give its URL as result_backend"
_PER_TASK = "set it per task: @app.task({option}=...)"

CELERY_NAMES: dict[str, str | Refused] = {
    "broker_host": Refused("give the whole URL as broker_url='amqp://user:pass@host:5672//'"),
    "broker_transport": Refused("hutch's transport is AMQP 0-9-1 (RabbitMQ) or memory://, "
                                "chosen by broker_url's scheme"),
    "broker_transport_options": Refused("no kombu transport underneath; RabbitMQ settings "
                                        "are hutch settings (broker_heartbeat...)"),
    "broker_connection_retry": Refused("hutch always reconnects with backoff "
                                       "(docs/reliability.md)"),
    "broker_connection_retry_on_startup": Refused("hutch always reconnects with backoff "
                                                  "(docs/reliability.md)"),
    "broker_connection_max_retries": Refused("hutch always reconnects with backoff "
                                             "(docs/reliability.md)"),
    "broker_pool_limit": Refused("hutch manages its own connections (no kombu pool)"),
    "broker_use_ssl": Refused("use an amqps:// broker_url"),
    "beat_scheduler": Refused("beat's schedules live in the result database "
                              "(docs/beat.md); there is no scheduler class to choose"),
    "beat_schedule_filename": Refused("beat keeps its state in the result database, "
                                      "not a file (docs/beat.md)"),
    "beat_max_loop_interval": "beat_poll_interval",
    "beat_sync_every": Refused("beat writes each run to the database as it happens"),
    "enable_utc": Refused("hutch stores times timezone-aware (UTC); timezone= "
                          "sets the zone naive datetimes are read in"),
    "result_serializer": Refused("results are stored as JSON in SQL columns"),
    "result_compression": Refused("results are stored as JSON in SQL columns"),
    "result_persistent": Refused(_RESULTS_IN_SQL),
    "result_exchange": Refused(_RESULTS_IN_SQL),
    "result_cache_max": Refused(_RESULTS_IN_SQL),
    "result_extended": Refused("always on in hutch: name, args, kwargs, worker, queue and "
                               "retries are columns of every result row"),
    "database_url": "result_backend",
    "database_engine_options": Refused(_SQL + "; hutch sets the engine up itself"),
    "database_table_names": Refused("hutch's tables have fixed names (docs/dba.md)"),
    "database_short_lived_sessions": Refused(_SQL + "; hutch manages its sessions"),
    "task_default_exchange": Refused("hutch declares its own exchanges from "
                                     "topology_prefix (docs/topology.md)"),
    "task_default_exchange_type": Refused("hutch declares its own exchanges "
                                          "(docs/topology.md)"),
    "task_default_routing_key": Refused("a route is a queue name: task_default_queue"),
    "task_default_delivery_mode": Refused("hutch's messages are always persistent"),
    "task_default_rate_limit": Refused(_PER_TASK.format(option="rate_limit")),
    "task_time_limit": Refused(_PER_TASK.format(option="time_limit")),
    "task_soft_time_limit": Refused(_PER_TASK.format(option="soft_time_limit")),
    "task_protocol": Refused("hutch has one message format (docs/protocol.md)"),
    "task_publish_retry": Refused("hutch publishes with confirms and raises PublishError; "
                                  "see broker_confirm_timeout"),
    "task_publish_retry_policy": Refused("hutch publishes with confirms and raises "
                                         "PublishError; see broker_confirm_timeout"),
    "task_track_started": Refused("always on: a worker records STARTED on every task"),
    "task_store_errors_even_if_ignored": Refused("hutch records every outcome in SQL"),
    "task_reject_on_worker_lost": Refused("see worker_max_lost_attempts: a lost task is "
                                          "run again that many times, then dead-lettered"),
    "worker_autoscaler": Refused("the autoscaler is built in: worker_autoscale='MAX,MIN'"),
    "worker_hijack_root_logger": Refused("hutch's worker configures logging itself: "
                                         "log_level and log_format"),
    "worker_log_format": Refused("use log_format ('console' or 'json')"),
    "worker_task_log_format": Refused("use log_format ('console' or 'json')"),
    "worker_enable_remote_control": Refused("remote control is always on (app.control: "
                                            "revoke, inspect, ping, broadcast)"),
    "worker_direct": Refused("hutch declares no per-worker queues "
                                "(docs/topology.md)"),
    "worker_redirect_stdouts": Refused("hutch does not capture a task's print()s; "
                                     "log with logging instead"),
}
"""Current Celery name -> hutch setting, or :class:`Refused` with the reason."""

REFUSED_VALUES: dict[str, dict[str, str]] = {
    "result_backend": dict.fromkeys(
        ("amqp", "rpc", "redis", "rediss", "cache", "memcache", "mongodb", "cassandra",
         "elasticsearch", "couchbase", "couchdb", "arangodb", "dynamodb", "s3", "gs",
         "azureblockblob", "consul", "file", "cosmosdbsql", "disabled"), _RESULTS_IN_SQL),
    "worker_pool": {"eventlet": _POOLS, "custom": _POOLS,
                    "processes": "use worker_pool='prefork' (Celery's other name for it)"},
}
"""Values of a hutch setting that only make sense in Celery, by setting and by value
(URL scheme for URLs), with the reason. Other brokers' URLs (``redis://``) and
``gevent`` keep the general message, which already names what hutch takes."""

_WARNED: set[str] = set()
_PACKAGE = os.path.dirname(__file__)


def hutch_name(name: str, settings: Collection[str]) -> str:
    """The hutch setting ``name`` means: itself if it is one of ``settings``, else
    through Celery's tables (warning once per name). Raises ConfigurationError for a
    name hutch refuses or does not know."""
    if name in settings:
        return name
    current = OLD_NAMES.get(name, name)
    target = current if current in settings else CELERY_NAMES.get(current)
    if isinstance(target, Refused):
        raise ConfigurationError(f"{_called(name, current)}: not supported by hutch: "
                                 f"{target.reason}")
    if target is None or target not in settings:
        raise ConfigurationError(_unknown(name, current))
    _warn_once(name, target)
    return target


def _called(name: str, current: str) -> str:
    return name if name == current else f"{name} (Celery's {current})"


def _unknown(name: str, current: str) -> str:
    if current in PLANNED:
        return (f"{_called(name, current)}: Celery's setting, not in this version of "
                f"hutch yet (issue #15)")
    return f"unknown setting {name!r}"


def _warn_once(name: str, target: str) -> None:
    if name in _WARNED:
        return
    _WARNED.add(name)
    warnings.warn(f"{name} is Celery's name for hutch's setting {target!r}; "
                  f"use {target} (shown once per name)", CeleryNameWarning, stacklevel=_depth())


def _depth() -> int:
    """The stack level of the first frame outside hutch: the caller's own line, however
    deep inside hutch (Hutch(), conf.update, config_from_object) the name arrived."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1  # type: ignore[assignment]
    return level


def refuse_value(name: str, value: object) -> None:
    """Raise ConfigurationError with the reason if ``value`` is one of Celery's that has
    no hutch meaning (``result_backend='rpc://'``, ``worker_pool='eventlet'``)."""
    refused = REFUSED_VALUES.get(name)
    if not refused or not isinstance(value, str):
        return
    key = value.removeprefix("db+")
    if "://" in key:
        try:
            key = urlsplit(key).scheme
        except ValueError:
            return
    reason = refused.get(key.lower())
    if reason is not None:
        raise ConfigurationError(f"{name}: {key!r} is not supported by hutch: {reason}")


def read_object(source: object, namespace: str | None,
                settings: Collection[str]) -> dict[str, Any]:
    """The settings an object holds, by hutch name: ``app.config_from_object``.

    ``source`` is a module, a class, any object or a mapping, or a module path
    (``"proj.settings"``, ``"django.conf:settings"``). Without ``namespace`` every
    attribute that is a setting name (hutch's or Celery's) is read and others are left
    alone (a settings module also holds imports and helpers). With ``namespace="CELERY"``
    only ``CELERY_*`` names are read, Django style: ``CELERY_BROKER_URL`` is
    ``broker_url``, and an unknown one is an error."""
    if isinstance(source, str):
        source = import_object(source)
    mapping = source if isinstance(source, Mapping) else None
    keys = list(mapping) if mapping is not None \
        else [key for key in dir(source) if not key.startswith("_")]
    values: dict[str, Any] = {}
    for key in map(str, keys):
        name = _setting_name(key, namespace, settings)
        if name is not None:  # only settings are read: other attributes may be costly
            value = mapping[key] if mapping is not None else getattr(source, key)
            values[_resolved(key, name, settings)] = value
    return values


def _setting_name(key: str, namespace: str | None, settings: Collection[str]) -> str | None:
    """The name ``key`` stands for, or None when it is not for hutch to read."""
    if namespace:
        if not key.startswith(f"{namespace}_"):
            return None
        name = key[len(namespace) + 1:].lower()
        return name if _known(name, settings) or key not in OLD_NAMES else key
    return key if _known(key, settings) else None


def _known(name: str, settings: Collection[str]) -> bool:
    return name in settings or name in OLD_NAMES or name in CELERY_NAMES or name in PLANNED


def _resolved(key: str, name: str, settings: Collection[str]) -> str:
    try:
        return hutch_name(name, settings)
    except ConfigurationError as exc:
        where = "" if key == name else f"{key}: "
        raise ConfigurationError(f"config_from_object: {where}{exc}") from None


def import_object(path: str) -> object:
    """``"pkg.module"`` or ``"pkg.module:attribute.path"`` -> that object."""
    module_name, _, attribute = path.partition(":")
    try:
        found: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(f"config_from_object: cannot import {module_name!r} "
                                 f"({type(exc).__name__}: {exc})") from None
    for part in filter(None, attribute.split(".")):
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigurationError(f"config_from_object: {module_name!r} has no "
                                     f"attribute {attribute!r}") from None
    return found


def module_from_envvar(variable: str, environ: Mapping[str, str] | None = None) -> str:
    """The settings module path held in ``variable``: ``app.config_from_envvar``."""
    path = (os.environ if environ is None else environ).get(variable, "").strip()
    if not path:
        raise ConfigurationError(f"config_from_envvar: the environment variable {variable} "
                                 f"is not set; it should name a settings module "
                                 f"(e.g. {variable}=proj.settings)")
    return path
