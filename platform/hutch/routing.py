"""``task_routes``: where a task's messages go when the call does not say (Celery's routers).

A route is a queue name or a mapping of message options (``queue``, ``priority``,
``serializer``...). The setting is one router or a list of them, consulted in order
when a message is built; the first that answers decides:

* a mapping ``{task name or glob or re.Pattern: route}`` (exact names first, then
  the patterns in their order), or a list of such ``(pattern, route)`` pairs;
* a function ``(name, args, kwargs, options, task=None, **kw) -> route | None``;
* a ``"module.path:function"`` (or ``"module.path.function"``) string naming one,
  imported on first use, so a router may live in the tasks module that imports the app;
* an object with Celery 3's ``route_for_task(name, args, kwargs)`` (a string naming
  such a class is instantiated).

Precedence, as Celery's: the call's options, then the task's own (``@app.task(queue=)``),
then the route, then the settings (``task_default_queue``...), hutch.call_options.

``task_create_missing_queues`` off limits every message, routed or not, to the queues
``task_queues`` lists and ``task_default_queue`` (:func:`check_known_queue`); on (the
default) a publisher declares any queue on first use, as hutch always has.

Pure and import-light (layer 0): settings check a route's shape with it when they
are set, and call options apply it.
"""

from __future__ import annotations

import fnmatch
import functools
import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .errors import ConfigurationError, QueueNotFound

ROUTE_KEYS = ("queue", "routing_key", "priority", "serializer", "compression", "time_limit",
              "soft_time_limit", "ignore_result")
"""What a route may set: the message fields a task may default (hutch.messages.TASK_DEFAULTS,
tests/unit/test_routing.py keeps them equal) and ``routing_key``, hutch's other name for
the queue (a route is a queue: one direct exchange per queue, docs/topology.md)."""

REFUSED_KEYS = {
    "exchange": "hutch publishes to one exchange per queue (docs/topology.md): route "
                "with 'queue'",
    "exchange_type": "hutch declares its own exchanges (docs/topology.md): route with 'queue'",
    "delivery_mode": "hutch's messages are always persistent",
}
"""Keys of Celery routes that have no meaning here, with the reason."""

Router = Callable[[str, tuple[Any, ...], dict[str, Any], dict[str, Any], Any], Any]
"""A prepared router: ``(name, args, kwargs, options, task) -> route or None``."""


# -- checking the setting ------------------------------------------------------------

def check_routes(name: str, value: Any) -> Any:
    """``value`` as given, if it is a valid ``task_routes`` (None, one router or a list or
    tuple of them); ConfigurationError naming the bad part otherwise. Router strings
    are not imported here: the module they name may import the app."""
    if value is None:
        return None
    for index, router in enumerate(value if isinstance(value, (list, tuple)) else [value]):
        where = f"{name}[{index}]" if isinstance(value, (list, tuple)) else name
        if isinstance(router, Mapping):
            _check_pairs(where, router.items())
        elif isinstance(router, (list, tuple)):
            _check_pairs(where, _pairs(where, router))
        elif isinstance(router, str):
            _check_path(where, router)
        elif not callable(router) and not hasattr(router, "route_for_task"):
            raise ConfigurationError(
                f"{where}: expected a mapping of task name to route, a router function, "
                f"or a 'module:function' path, got {router!r}")
    return value


def _pairs(where: str, items: Iterable[Any]) -> list[tuple[Any, Any]]:
    pairs = []
    for item in items:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ConfigurationError(f"{where}: expected (pattern, route) pairs, got {item!r}")
        pairs.append((item[0], item[1]))
    return pairs


def _check_pairs(where: str, pairs: Iterable[tuple[Any, Any]]) -> None:
    for pattern, route in pairs:
        if not (isinstance(pattern, str) and pattern) and not isinstance(pattern, re.Pattern):
            raise ConfigurationError(f"{where}: keys are task names, globs ('proj.tasks.*') "
                                     f"or compiled regular expressions, got {pattern!r}")
        check_route(f"{where}[{_shown(pattern)!r}]", route)


def _check_path(where: str, path: str) -> None:
    module, attribute = _split_path(path)
    if not module or not attribute or not all(p.isidentifier() for p in
                                              (*module.split("."), *attribute.split("."))):
        raise ConfigurationError(f"{where}: {path!r} is not a 'module.path:function' path")


def check_route(where: str, route: Any) -> dict[str, Any]:
    """A route as a mapping of :data:`ROUTE_KEYS` (``routing_key`` folded into ``queue``
    when no queue is given); ConfigurationError naming ``where`` for a bad one."""
    if isinstance(route, str) and route:
        return {"queue": route}
    if not isinstance(route, Mapping):
        raise ConfigurationError(f"{where}: a route is a queue name or a mapping such as "
                                 f"{{'queue': 'reports', 'priority': 5}}, got {route!r}")
    for key in route:
        if key in REFUSED_KEYS:
            raise ConfigurationError(f"{where}: {key!r} is not supported by hutch: "
                                     f"{REFUSED_KEYS[key]}")
        if key not in ROUTE_KEYS:
            raise ConfigurationError(f"{where}: unknown key {key!r}; a route may set "
                                     f"{', '.join(ROUTE_KEYS)}")
    out = {key: value for key, value in route.items() if value is not None}
    routing_key = out.pop("routing_key", None)
    queue = out.pop("queue", routing_key)
    if queue is not None:
        if not isinstance(queue, str) or not queue:
            raise ConfigurationError(f"{where}: 'queue' must be a non-empty string, "
                                     f"got {queue!r}")
        out["queue"] = queue
    return out


def _shown(pattern: str | re.Pattern[str]) -> str:
    return pattern if isinstance(pattern, str) else pattern.pattern


def _split_path(path: str) -> tuple[str, str]:
    """``"a.b:c"`` or ``"a.b.c"`` -> ``("a.b", "c")``."""
    if ":" in path:
        module, _, attribute = path.partition(":")
        return module, attribute
    module, _, attribute = path.rpartition(".")
    return module, attribute


# -- routing a message ----------------------------------------------------------------

def route_for(routes: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
              options: dict[str, Any], task: Any = None) -> dict[str, Any] | None:
    """The route of task ``name`` from the first router of ``routes`` (the
    ``task_routes`` setting) that answers, checked; None when none does."""
    if not routes:
        return None
    for index, router in enumerate(_prepared(routes)):
        found = router(name, args, kwargs, options, task)
        if found is not None:
            return check_route(f"task_routes[{index}] for {name}", found) or None
    return None


def _prepared(routes: Any) -> list[Router]:
    """The routers of the setting's value, built afresh each time so that a mapping
    changed in place is followed (regular expressions are cached by ``re``, imported
    routers by :func:`_import`)."""
    return [_prepare(item) for item in (routes if isinstance(routes, (list, tuple))
                                        else [routes])]


def _prepare(router: Any) -> Router:
    if isinstance(router, Mapping):
        return _map_router(list(router.items()))
    if isinstance(router, (list, tuple)):
        return _map_router(_pairs("task_routes", router))
    if isinstance(router, str):
        return _lazy(router)
    return _calling(router)


def _map_router(pairs: list[tuple[Any, Any]]) -> Router:
    """Exact names first, then the globs and regular expressions in their order."""
    exact = {key: route for key, route in pairs if isinstance(key, str) and "*" not in key}
    patterns = [(key if isinstance(key, re.Pattern) else _glob(key), route)
                for key, route in pairs if key not in exact]

    def route(name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
              options: dict[str, Any], task: Any) -> Any:
        if name in exact:
            return exact[name]
        return next((found for regex, found in patterns if regex.match(name)), None)
    return route


@functools.lru_cache(maxsize=1024)
def _glob(pattern: str) -> re.Pattern[str]:
    """A ``*`` glob as a regular expression, compiled once (routes are built per message)."""
    return re.compile(fnmatch.translate(pattern))


def _calling(router: Any) -> Router:
    """A router function, or a Celery 3 router object (``route_for_task``)."""
    if hasattr(router, "route_for_task"):
        return lambda name, args, kwargs, options, task: router.route_for_task(name, args, kwargs)
    return lambda name, args, kwargs, options, task: router(name, args, kwargs, options,
                                                            task=task)


def _lazy(path: str) -> Router:
    """The router ``path`` names, imported on its first use."""
    def route(name: str, args: tuple[Any, ...], kwargs: dict[str, Any],
              options: dict[str, Any], task: Any) -> Any:
        return _calling(_import(path))(name, args, kwargs, options, task)
    return route


@functools.lru_cache(maxsize=256)
def _import(path: str) -> Any:
    module_name, attribute = _split_path(path)
    try:
        found: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"task_routes: cannot import router {path!r} "
                                 f"({type(exc).__name__}: {exc})") from None
    if isinstance(found, type) and hasattr(found, "route_for_task"):
        found = found()  # Celery 3 router classes are instantiated, as Celery does
    return found


def check_known_queue(queue: str, task_queues: Mapping[str, Any], default_queue: str,
                      create_missing: bool, task: str | None = None) -> None:
    """QueueNotFound when ``create_missing`` is off and ``queue`` is neither in
    ``task_queues`` nor the default queue (Celery: ``task_create_missing_queues``)."""
    if create_missing or queue == default_queue or queue in task_queues:
        return
    known = ", ".join(sorted({default_queue, *task_queues}))
    what = f"task {task}: " if task else ""
    raise QueueNotFound(f"{what}queue {queue!r} is not in task_queues and "
                        f"task_create_missing_queues is off (known: {known}); add it to "
                        f"task_queues, e.g. task_queues={{{queue!r}: {{}}}}")
