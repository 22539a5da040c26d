"""Queue features per route, from settings: the one place that reads ``task_queues``.

Settings check the shape of each ``task_queues`` entry when it is set; this module
combines an entry with the defaults (``task_queue_type``, ``task_queue_max_priority``)
into the :class:`~hutch.brokers.amqp.topology.RouteOptions` the topology declares, refusing
what RabbitMQ 3.10 cannot do, and checks a message's priority against its route.
Producers and workers all build their topology here, so they declare the same
arguments as long as they share the settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import Settings
from ..errors import ConfigurationError
from .amqp.topology import RouteOptions, Topology

DEFAULT_DELIVERY_LIMIT = 20
"""``x-delivery-limit`` of quorum routes that set none (RabbitMQ 4.0's own default).

Deliberately independent of ``worker_max_lost_attempts``: a poison message is
republished (with a fresh delivery count) each time the worker notices a lost
attempt, so only returns the worker never got to judge add up here, and changing a
worker setting must never change a queue's arguments (RabbitMQ would refuse them)."""


def route_options(conf: Settings, route: str | None) -> RouteOptions:
    """The features of ``route`` (``None``: of any route ``task_queues`` does not list)."""
    spec = conf.task_queues.get(route, {}) if route is not None else {}
    return _resolve(spec, f"task_queues[{route!r}]", conf)


def _resolve(spec: Mapping[str, Any], where: str, conf: Settings) -> RouteOptions:
    """Only an explicit entry can conflict: the defaults never combine into a conflict."""
    queue_type = spec.get("queue_type", conf.task_queue_type)
    if queue_type == "quorum":
        if spec.get("max_priority") is not None:
            raise ConfigurationError(
                f"{where}: max_priority needs a classic queue "
                "(RabbitMQ 3.10 has no message priorities on quorum queues)")
        # the default maximum priority is for classic routes; a quorum route simply has none
        return RouteOptions(queue_type="quorum",
                            delivery_limit=spec.get("delivery_limit") or DEFAULT_DELIVERY_LIMIT)
    if spec.get("delivery_limit") is not None:
        raise ConfigurationError(
            f"{where}: delivery_limit needs queue_type 'quorum' (classic queues count no "
            "deliveries; worker_max_lost_attempts protects them from poison messages)")
    return RouteOptions(max_priority=spec.get("max_priority", conf.task_queue_max_priority))


def topology_for(conf: Settings) -> Topology:
    """The topology these settings describe; every configured route is checked now, so a
    bad combination fails when a broker is opened, not at some later publish."""
    options = {route: route_options(conf, route) for route in conf.task_queues}
    return Topology(conf.topology_prefix, options, route_options(conf, None),
                    ladder_type=conf.delay_queue_type or conf.task_queue_type)


def message_priority(conf: Settings, route: str, given: Any) -> int | None:
    """The priority a message for ``route`` carries: ``given`` (the call's or the task's)
    if it fits the route's maximum, else ``task_default_priority`` where the route has
    priorities. A priority the route cannot honour is refused, not silently dropped."""
    if given is None:
        default = conf.task_default_priority
        if default is None:
            return None
        top = route_options(conf, route).max_priority
        return None if top is None else min(default, top)
    top = route_options(conf, route).max_priority
    if isinstance(given, bool) or not isinstance(given, int) or given < 0:
        raise ConfigurationError(f"priority: expected a whole number 0..{top or 9}, "
                                 f"got {given!r}")
    if top is None:
        raise ConfigurationError(
            f"priority: queue {route!r} has no maximum priority, so RabbitMQ would ignore "
            f"priority={given}; configure one, e.g. task_queues={{{route!r}: "
            "{'max_priority': 9}} (docs/guide.md, 'Priorities')")
    if given > top:
        raise ConfigurationError(f"priority: {given} is above {top}, the maximum priority of "
                                 f"queue {route!r}")
    return given
