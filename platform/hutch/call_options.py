"""Call options (``apply_async``/``submit`` keywords) turned into a TaskMessage.

One place validates every option, so ``task.apply_async``, ``client.submit``,
signatures and the CLI all accept exactly the same set with the same errors.
"""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from . import routing
from .brokers.routes import message_priority
from .config import COMPRESSIONS, SERIALIZERS, Settings
from .current import current_app, current_request
from .envelope import ID_LENGTH
from .errors import ConfigurationError, InvalidTimeLimits
from .messages import (
    MAX_DELAY_SECONDS,
    OPTIONS,
    ORIGIN,
    SPECS,
    TASK_DEFAULTS,
    SignatureDict,
    TaskMessage,
)
from .workflows.canvas import Signature

if TYPE_CHECKING:
    from .tasks import TaskOptions

CALL_OPTIONS = frozenset(OPTIONS)
"""Every keyword ``apply_async``/``submit`` accept: the message fields declared as call
options, and the few that are not fields (hutch.messages.CALL_ONLY_OPTIONS)."""


@dataclass(frozen=True)
class RetryPolicy:
    """Publish retries while the broker is unreachable (Celery's four keys)."""

    max_retries: int | None = 3
    interval_start: float = 0.0
    interval_step: float = 0.2
    interval_max: float = 0.2

    @classmethod
    def from_mapping(cls, policy: dict[str, Any] | None) -> RetryPolicy:
        policy = dict(policy or {})
        unknown = set(policy) - {"max_retries", "interval_start", "interval_step", "interval_max"}
        if unknown:
            raise ConfigurationError(f"retry_policy: unknown key(s) {', '.join(sorted(unknown))}")
        return cls(**policy)

    def intervals(self) -> Iterable[float]:
        """Seconds to sleep before each retry (endless when max_retries is None)."""
        attempt = 0
        while self.max_retries is None or attempt < self.max_retries:
            yield min(self.interval_start + attempt * self.interval_step, self.interval_max)
            attempt += 1


def check_options(options: dict[str, Any]) -> None:
    unknown = set(options) - CALL_OPTIONS
    if unknown:
        raise ConfigurationError(f"unknown call option(s): {', '.join(sorted(unknown))}")


def build_message(name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                  options: dict[str, Any], conf: Settings,
                  task_options: TaskOptions | None = None, *,
                  notify: str | None = None) -> TaskMessage:
    """Validate ``options`` and build the message; raises ConfigurationError naming the
    option. Options that are message fields and need no work pass through as given.
    ``notify``: the sending client's notice key (TaskMessage.notify)."""
    check_options(options)
    if not isinstance(name, str) or not name:
        raise ConfigurationError("task name must be a non-empty string")
    if not isinstance(kwargs, dict):
        raise ConfigurationError("kwargs must be a mapping")
    now = dt.datetime.now(dt.timezone.utc)
    task_id = str(options.get("task_id") or uuid.uuid4())
    if len(task_id) > ID_LENGTH:
        raise ConfigurationError(f"task_id: at most {ID_LENGTH} characters, got {len(task_id)}")
    given = {**options, "queue": options.get("queue") or options.get("routing_key")}
    chosen = _checked(name, task_defaults(given, task_options, conf,
                                          _route(name, args, kwargs, given, task_options, conf)))
    routing.check_known_queue(chosen["queue"], conf.task_queues, conf.task_default_queue,
                              conf.task_create_missing_queues, name)
    headers = options.get("headers") or {}
    if not isinstance(headers, dict):
        raise ConfigurationError("headers: must be a mapping")
    given_as_is = {n: v for n, v in options.items() if v is not None and n in SPECS} \
        if options else {}
    return TaskMessage(**{
        **given_as_is, **chosen, **_lineage(options), "task": name, "id": task_id,
        "args": tuple(args), "kwargs": kwargs, "eta": _eta(options, conf.tzinfo, now),
        "expires": _expires(options.get("expires"), conf.tzinfo, now),
        "link": _signatures("link", options.get("link")),
        "link_error": _signatures("link_error", options.get("link_error")),
        "headers": headers, "priority": message_priority(conf, chosen["queue"],
                                                         chosen["priority"]),
        "origin": ORIGIN, "sent_at": now, "notify": notify,
    })


def _checked(name: str, chosen: dict[str, Any]) -> dict[str, Any]:
    """The task defaults as the message holds them; ConfigurationError naming a bad one."""
    if chosen["serializer"] not in SERIALIZERS:
        raise ConfigurationError(f"serializer: {chosen['serializer']!r} is not one of "
                                 f"{', '.join(SERIALIZERS)}")
    if chosen["compression"] is not None and chosen["compression"] not in COMPRESSIONS:
        raise ConfigurationError(f"compression: {chosen['compression']!r} is not one of "
                                 f"{', '.join(COMPRESSIONS)}")
    hard = time_limit("time_limit", chosen["time_limit"])
    soft = time_limit("soft_time_limit", chosen["soft_time_limit"])
    check_time_limits(name, soft, hard)
    return {**chosen, "queue": str(chosen["queue"]), "time_limit": hard,
            "soft_time_limit": soft, "ignore_result": bool(chosen["ignore_result"])}


def _lineage(options: dict[str, Any]) -> dict[str, Any]:
    """parent_id and root_id: as given, else from the task running here (a worker's,
    not an eager call's)."""
    parent = current_request()
    by_task = parent if parent is not None and not parent.is_eager else None
    return {"parent_id": options.get("parent_id") or (by_task.id if by_task else None),
            "root_id": options.get("root_id") or (by_task.root_id or by_task.id
                                                  if by_task else None)}


def task_defaults(options: dict[str, Any], task_options: TaskOptions | None,
                  conf: Settings, route: dict[str, Any] | None = None) -> dict[str, Any]:
    """Each field a task may default (hutch.messages.TASK_DEFAULTS): the call's value,
    else the task's, else the route's (``task_routes``), else the app-wide setting's,
    else none (None or "": not given). Celery's order: routes come after the task's own
    options (docs/guide.md, "Routing")."""
    chosen: dict[str, Any] = {}
    for name, setting in _DEFAULTED:
        value = options.get(name)
        if _unset(value) and task_options is not None:
            value = getattr(task_options, name)
        if _unset(value) and route:
            value = route.get(name)
        if _unset(value) and setting is not None:
            value = getattr(conf, setting)
        chosen[name] = None if value == "" else value
    return chosen


def _route(name: str, args: tuple[Any, ...], kwargs: dict[str, Any], given: dict[str, Any],
           task_options: TaskOptions | None, conf: Settings) -> dict[str, Any] | None:
    """The ``task_routes`` route of this message (hutch.routing), if any router answers.
    A router sees the call's options over the task's own, as in Celery."""
    if not conf.task_routes:
        return None
    own = {n: getattr(task_options, n) for n in TASK_DEFAULTS} if task_options else {}
    options = {**{n: v for n, v in own.items() if not _unset(v)},
               **{n: v for n, v in given.items() if not _unset(v)}}
    return routing.route_for(conf.task_routes, name, args, kwargs, options,
                             _registered(name, conf))


def _registered(name: str, conf: Settings) -> Any:
    """The Task object a router's ``task=`` gets: the current app's task of that name
    when these are that app's settings, else None (a producer without the task)."""
    try:
        app = current_app()
    except ConfigurationError:
        return None
    return app.tasks.get(name) if getattr(app, "conf", None) is conf else None


_DEFAULTED = tuple((name, SPECS[name].setting) for name in TASK_DEFAULTS)


def _unset(value: Any) -> bool:
    return value is None or value == ""


def _signatures(option: str, value: Any) -> tuple[SignatureDict, ...]:
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        if isinstance(item, Signature):
            out.append(item.to_dict())
        elif isinstance(item, dict) and "task" in item:
            out.append(item)
        else:
            raise ConfigurationError(f"{option}: expected a signature (task.s(...)), got {item!r}")
    return tuple(out)


def aware(value: dt.datetime, zone: dt.tzinfo) -> dt.datetime:
    """A naive datetime is read in the app's timezone; an aware one is kept as given."""
    return value.replace(tzinfo=zone) if value.tzinfo is None else value


def _eta(options: dict[str, Any], zone: ZoneInfo, now: dt.datetime) -> dt.datetime | None:
    eta, countdown = options.get("eta"), options.get("countdown")
    if eta is not None and countdown is not None:
        raise ConfigurationError("give either eta or countdown, not both")
    if countdown is not None:
        eta = now + dt.timedelta(seconds=seconds("countdown", countdown))
    if eta is None:
        return None
    if not isinstance(eta, dt.datetime):
        raise ConfigurationError(f"eta: expected a datetime, got {eta!r}")
    eta = aware(eta, zone)
    if (eta - now).total_seconds() > MAX_DELAY_SECONDS:
        raise ConfigurationError(
            f"eta/countdown: at most {MAX_DELAY_SECONDS} seconds (about 8.5 years) ahead")
    return eta


def _expires(value: Any, zone: ZoneInfo, now: dt.datetime) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return aware(value, zone)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return now + dt.timedelta(seconds=seconds("expires", value))
    raise ConfigurationError(f"expires: expected seconds or a datetime, got {value!r}")


def seconds(name: str, value: Any, *, positive: bool = False) -> float:
    """``value`` as a finite number of seconds (a bool is not one); ConfigurationError
    naming the option otherwise. NaN and infinities never reach a header: RabbitMQ
    closes the publishing connection on a NaN double."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or (positive and value <= 0):
        wanted = "a number of seconds > 0" if positive else "a finite number of seconds"
        raise ConfigurationError(f"{name}: expected {wanted}, got {value!r}")
    return float(value)


def time_limit(name: str, value: Any) -> float | None:
    return None if value is None else seconds(name, value, positive=True)


def check_time_limits(where: str, soft: float | None, hard: float | None) -> None:
    """InvalidTimeLimits naming both values when ``soft`` is not shorter than ``hard``
    (either may come from the task's definition, the other from the call)."""
    if soft is not None and hard is not None and soft >= hard:
        raise InvalidTimeLimits(
            f"{where}: soft_time_limit={soft:g} s must be shorter than time_limit={hard:g} s "
            "(the hard limit would stop the task before the soft one lets it clean up)")
