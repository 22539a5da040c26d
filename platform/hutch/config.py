"""One typed settings object for an app, with documented defaults.

Precedence, lowest first (docs/ops.md, "Configuration"):

1. the defaults below;
2. keywords given to ``Hutch(...)`` and ``app.config_from_object(...)``: the code's own
   defaults (a developer's broker; Celery's names too, hutch.celery_names);
3. the config file, ``$HUTCH_CONFIG`` or ``/etc/hutch/hutch.toml`` (hutch.config_file):
   the host's settings, shared by every unit on it;
4. ``HUTCH_*`` environment variables: per unit, instance or shell, so they refine
   the file, and ops repoint code without editing it;
5. assignments to ``app.conf`` after construction: code that overrides on purpose;
6. command-line flags (``-b``, ``--backend``, ``-l``, ``--log-format``): one run.

Every value is validated when it is set, so a typo fails at start-up, not in
the middle of a publish, and each value remembers where it came from
(:meth:`Settings.source_of`, ``hutch config show``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import celery_names, config_file, routing
from .errors import ConfigurationError, NoSuchSetting
from .schedules.entry import from_config

POOLS = ("prefork", "threads", "asyncio", "solo")
LOG_FORMATS = ("auto", "console", "json")
SERIALIZERS = ("json", "msgpack", "yaml", "pickle")
COMPRESSIONS = ("zlib", "gzip", "bzip2", "lzma")
QUEUE_TYPES = ("classic", "quorum")
FAILOVER_STRATEGIES = ("round-robin", "shuffle")
QUEUE_FEATURES = ("max_priority", "queue_type", "delivery_limit")
"""Keys of a ``task_queues`` entry (resolved per route by hutch.brokers.routes)."""
DEFAULT_RESULT_BACKEND = "sqlite:///hutch.sqlite"
"""The embedded default: a SQLite file in the current directory, migrated on first use."""


DEFAULT: Final = "default"
APP: Final = "app"
"""Sources of a value (:meth:`Settings.source_of`) besides ``file PATH``, ``env VAR``
and ``flag --NAME``: the defaults below, and the application's code."""


def _env(name: str, *, secret: bool = False) -> dict[str, Any]:
    """A field's metadata: its ``HUTCH_*`` variable, and whether its whole value is a
    secret (shown as ``***``; URLs need not be: their passwords are masked anyway)."""
    return {"env": name, "secret": secret}


@dataclass
class Settings:
    """Everything an app can be told. Field names follow Celery's lower-case settings.

    Values come, lowest precedence first, from the defaults, ``Hutch(...)`` keywords,
    the config file, ``HUTCH_*`` variables, assignments after construction and CLI
    flags (the module's docstring says why in that order); :meth:`source_of` names
    the one each value came from."""

    broker_url: str = field(default="amqp://guest:guest@localhost:5672//",
                            metadata=_env("HUTCH_BROKER_URL"))
    """``amqp://user:pass@host:port/vhost`` or ``memory://`` (in-process, demo and tests).
    Several RabbitMQ nodes: a list of URLs, or one string of them separated by ``;``
    (kombu's form), kept as that string; connections fail over between them
    (``broker_failover_strategy``, hutch.brokers.amqp.nodes)."""
    broker_failover_strategy: str = field(default="round-robin",
                                          metadata=_env("HUTCH_BROKER_FAILOVER_STRATEGY"))
    """The order in which connections try the nodes of ``broker_url``: ``round-robin``
    (as listed, moving to the next one when a connection fails or drops) or
    ``shuffle`` (the same, from an order each process draws at random)."""

    result_backend: str = field(default=DEFAULT_RESULT_BACKEND,
                                metadata=_env("HUTCH_BACKEND_URL"))
    """SQLAlchemy URL; ``db+`` prefixes (Celery style) are accepted."""

    task_default_queue: str = field(default="celery", metadata=_env("HUTCH_DEFAULT_QUEUE"))
    """Route for tasks given no ``queue=``."""

    timezone: str = field(default="UTC", metadata=_env("HUTCH_TIMEZONE"))
    """Zone in which naive datetimes (eta, expires, crontabs) are read."""

    topology_prefix: str = field(default="hutch", metadata=_env("HUTCH_TOPOLOGY_PREFIX"))
    """Prefix of every exchange and queue name hutch declares."""

    task_serializer: str = field(default="json", metadata=_env("HUTCH_TASK_SERIALIZER"))
    task_compression: str | None = field(default=None, metadata=_env("HUTCH_TASK_COMPRESSION"))
    accept_content: tuple[str, ...] = field(default=("json", "msgpack", "yaml"),
                                            metadata=_env("HUTCH_ACCEPT_CONTENT"))
    """Serializers a worker will decode; pickle must be added here explicitly."""

    task_acks_late: bool = field(default=True, metadata=_env("HUTCH_ACKS_LATE"))
    """Acknowledge after the outcome is recorded (a killed worker loses nothing)."""

    task_ignore_result: bool = field(default=False, metadata=_env("HUTCH_IGNORE_RESULT"))
    task_track_pending: bool = field(default=True, metadata=_env("HUTCH_TRACK_PENDING"))
    """Clients write a PENDING row when they submit, so queued work is visible in SQL."""
    task_send_sent_event: bool = field(default=True, metadata=_env("HUTCH_SEND_SENT_EVENT"))
    """Clients send a ``task-sent`` event for each message they publish (hutch.events);
    clients skip them while no reader is bound (FanOut.heard)."""
    task_always_eager: bool = field(default=False, metadata=_env("HUTCH_TASK_ALWAYS_EAGER"))
    """``delay()``, ``apply_async()`` and ``client.submit`` run the task here with
    ``task.apply()`` and return its EagerResult: nothing is sent, no row is written
    (Celery's setting, for tests; workflows run here too, hutch.client.eager)."""
    task_eager_propagates: bool = field(default=False,
                                        metadata=_env("HUTCH_TASK_EAGER_PROPAGATES"))
    """An eagerly run task's exception is raised by ``apply()``/``delay()`` at once
    instead of being kept in its EagerResult (Celery's setting)."""

    worker_pool: str = field(default="prefork", metadata=_env("HUTCH_POOL"))
    worker_concurrency: int = field(default_factory=lambda: os.cpu_count() or 1,
                                    metadata=_env("HUTCH_CONCURRENCY"))
    worker_prefetch_multiplier: int = field(default=64, metadata=_env("HUTCH_PREFETCH_MULTIPLIER"))
    """Unacknowledged deliveries per execution slot. Late acks wait for the batched result
    commit, so a slot needs messages in hand to stay busy: 16 measured 2,500 tasks/s end
    to end, 64 measured 3,600 (docs/performance.md). Use 1 for long tasks."""

    worker_autoscale: str | None = field(default=None, metadata=_env("HUTCH_AUTOSCALE"))
    """``"MAX,MIN"``: a prefork (threads) worker grows to MAX children (threads) while all
    are busy and stops those idle for ``worker_autoscale_keepalive``, down to MIN
    (``--autoscale``)."""
    worker_autoscale_keepalive: float = field(default=30.0,
                                              metadata=_env("HUTCH_AUTOSCALE_KEEPALIVE"))
    """Seconds an autoscaled child or thread may stay idle before it is stopped."""

    worker_max_tasks_per_child: int | None = field(
        default=None, metadata=_env("HUTCH_MAX_TASKS_PER_CHILD"))
    """A prefork child exits after this many tasks and the supervisor starts a fresh one
    (``--max-tasks-per-child``; None: never): a cap on what leaking tasks can hold."""
    worker_max_memory_per_child: int | None = field(
        default=None, metadata=_env("HUTCH_MAX_MEMORY_PER_CHILD"))
    """KiB of resident memory: a prefork child that is above it after a task exits and
    is replaced (``--max-memory-per-child``; None: no limit). The task that crossed it
    completes first."""

    worker_send_task_events: bool = field(default=True, metadata=_env("HUTCH_SEND_EVENTS"))
    """Workers send task events (received ... rejected) for live views, none while no
    reader is bound (FanOut.heard); ``hutch worker -E/--events`` or ``--without-events``
    overrides it (docs/performance.md: the cost)."""

    worker_state_db: str | None = field(default=None, metadata=_env("HUTCH_STATEDB"))
    """``--statedb FILE``: a worker-local SQLite copy of the revocations it knows, kept
    beside the database's ``hutch_revoked`` table (Celery's option; optional here)."""

    revoke_retention: float = field(default=7 * 86400.0, metadata=_env("HUTCH_REVOKE_RETENTION"))
    """Seconds a revocation is honoured, counted from the revoke or from the task's eta,
    whichever is later."""

    worker_disable_rate_limits: bool = field(default=False,
                                             metadata=_env("HUTCH_DISABLE_RATE_LIMITS"))
    """Ignore every task's ``rate_limit`` in this worker (Celery's setting of that name)."""

    task_queues: dict[str, dict[str, Any]] = field(default_factory=dict,
                                                   metadata=_env("HUTCH_TASK_QUEUES"))
    """Queue features per route, e.g. ``{"reports": {"max_priority": 9},
    "payments": {"queue_type": "quorum", "delivery_limit": 20}}`` (env: a JSON object).
    Keys: ``max_priority`` (1-255, classic only), ``queue_type`` (``classic`` or
    ``quorum``), ``delivery_limit`` (quorum only). Every producer and worker of a route
    must agree: RabbitMQ refuses to redeclare a queue with other arguments."""

    task_queue_type: str = field(default="classic", metadata=_env("HUTCH_QUEUE_TYPE"))
    """Queue type of routes that ``task_queues`` does not set one for."""
    delay_queue_type: str | None = field(default=None, metadata=_env("HUTCH_DELAY_QUEUE_TYPE"))
    """Queue type of the delay ladder (countdowns, etas, retries): ``classic``, ``quorum``
    (replicated: survives the loss of a cluster node) or None, ``task_queue_type``'s.
    Each type is a ladder of its own (``P.delay.*``, ``P.delay.quorum.*``)."""

    task_queue_max_priority: int | None = field(default=None,
                                                metadata=_env("HUTCH_QUEUE_MAX_PRIORITY"))
    """Maximum priority of classic routes that ``task_queues`` does not set one for."""

    task_default_priority: int | None = field(default=None,
                                              metadata=_env("HUTCH_DEFAULT_PRIORITY"))
    """Priority of messages given none, on routes that have a maximum priority."""

    # -- routing, annotations and the modules to import (Celery's; docs/guide.md) ----------
    task_routes: dict[Any, Any] | list[Any] | tuple[Any, ...] | str | Callable[..., Any] \
        | None = field(default=None, metadata=_env("HUTCH_TASK_ROUTES"))
    """Celery's routers: where a task goes when its call and its ``@app.task`` name no
    queue: ``{"proj.reports.*": {"queue": "reports", "priority": 5}}`` (exact names,
    globs, ``re.compile(...)`` keys), a router function ``(name, args, kwargs, options,
    task=None, **kw)``, a ``"module:function"`` path, or a list of those, asked in order
    (hutch.routing; env: JSON)."""

    task_annotations: dict[str, Any] | list[Any] | tuple[Any, ...] | Any | None = field(
        default=None, metadata=_env("HUTCH_TASK_ANNOTATIONS"))
    """Task options set from the settings, over ``@app.task``'s: ``{"*": {"rate_limit":
    "10/s"}, "proj.tasks.add": {"time_limit": 30}}``, a list of such mappings, or objects
    with ``annotate(task) -> dict | None`` (hutch.annotations; env: JSON)."""

    task_create_missing_queues: bool = field(default=True,
                                             metadata=_env("HUTCH_CREATE_MISSING_QUEUES"))
    """A message may go to any queue, declared on first use. False: only to the queues
    ``task_queues`` lists and ``task_default_queue``; another is QueueNotFound when the
    message is built, and ``hutch worker -Q`` refuses it (Celery's setting)."""

    imports: tuple[str, ...] = field(default=(), metadata=_env("HUTCH_IMPORTS"))
    """Modules imported when the app is finalized (``hutch -A``, the worker, beat):
    task modules that nothing else imports (Celery's ``imports``; env: comma-separated)."""

    include: tuple[str, ...] = field(default=(), metadata=_env("HUTCH_INCLUDE"))
    """Imported after ``imports``, the same way (Celery's ``include``)."""

    worker_max_lost_attempts: int = field(default=3, metadata=_env("HUTCH_MAX_LOST_ATTEMPTS"))
    """Attempts of a task whose worker process died under it (killed, crashed) before
    the task is FAILURE with WorkerLostError and dead-lettered instead of run again."""

    worker_max_message_bytes: int = field(default=64 * 1024 * 1024,
                                          metadata=_env("HUTCH_MAX_MESSAGE_BYTES"))
    """Largest task message body a worker reads, both as received and once decompressed
    (a compressed body is unpacked in pieces and refused as soon as it passes this, so a
    small "zip bomb" never inflates in memory); a larger one is dead-lettered."""

    worker_claim_synchronous_commit: bool = field(
        default=True, metadata=_env("HUTCH_CLAIM_SYNCHRONOUS_COMMIT"))
    """PostgreSQL: a delivery's claim (its RECEIVED write, committed before the task
    runs) waits for the WAL flush. False: the claim's commit returns before it (its
    statement turns ``synchronous_commit`` off for itself; outcomes always wait), about
    1 ms off each task's start on a disk whose flush costs that; a PostgreSQL crash
    then loses the claims of the last ~0.6 s not yet flushed by any later commit, and a
    second copy of such a task delivered after the restart, before the first run's
    outcome is committed, runs too (docs/performance.md, "Where the round trip goes")."""

    worker_heartbeat_interval: float = field(default=5.0,
                                             metadata=_env("HUTCH_WORKER_HEARTBEAT_INTERVAL"))
    """Seconds between a worker's writes of its ``hutch_workers`` row; a worker silent
    for 3 of its intervals reads offline (docs/dba.md)."""

    worker_heartbeat_retention: float = field(default=7 * 86400.0,
                                              metadata=_env("HUTCH_WORKER_HEARTBEAT_RETENTION"))
    """Seconds a ``hutch_workers`` row is kept after the worker's last heartbeat (a
    timedelta is accepted); deleted by the active beat's cleanup."""

    broker_heartbeat: int = field(default=60, metadata=_env("HUTCH_BROKER_HEARTBEAT"))
    broker_connection_timeout: float = field(default=5.0, metadata=_env("HUTCH_CONNECT_TIMEOUT"))
    broker_confirm_timeout: float = field(default=30.0, metadata=_env("HUTCH_CONFIRM_TIMEOUT"))
    """Seconds a publish waits for the broker's confirm before raising PublishError."""
    broker_confirm_wait: bool = field(default=True, metadata=_env("HUTCH_CONFIRM_WAIT"))
    """``submit()``/``delay()`` return once RabbitMQ confirmed the message. False: they
    return once it is handed to the publisher; ``result.confirmed(timeout)`` waits for
    the confirm, a lost connection's messages are published again, and
    ``client.flush()``/``close()`` (and interpreter exit) wait for every one
    (hutch.client.confirms). ``AsyncClient`` the same, awaited: ``await
    client.submit()`` returns once aio-pika has the message, ``await
    result.confirmed(timeout)``, ``await client.flush()``; ``aclose()`` awaits them
    (hutch.client.aio_confirms)."""

    broker_management_url: str | None = field(default=None,
                                              metadata=_env("HUTCH_BROKER_MANAGEMENT_URL"))
    """``http://user:pass@host:15672/``: RabbitMQ's management HTTP API, read for queue
    stats (unacked messages, which AMQP cannot count); credentials default to the
    broker URL's. None: passive declares only, unacked unknown. Any failure of the API
    falls back to them (hutch.brokers.amqp.management)."""

    result_batch_max: int = field(default=500, metadata=_env("HUTCH_RESULT_BATCH_MAX"))
    """Most state changes a worker commits in one transaction."""

    log_level: str = field(default="INFO", metadata=_env("HUTCH_LOG_LEVEL"))
    log_format: str = field(default="auto", metadata=_env("HUTCH_LOG_FORMAT"))
    """``console`` (coloured, for terminals), ``json`` (one object a line) or ``auto``."""

    beat_schedule: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Periodic tasks in Celery's format; synced into the database when beat starts."""

    # -- beat (docs/beat.md) ------------------------------------------------------------
    beat_poll_interval: float = field(default=1.0, metadata=_env("HUTCH_BEAT_POLL_INTERVAL"))
    """Seconds between beat's reads of ``hutch_schedules`` (edits apply within this) and
    between lease renewals. At most 5."""

    beat_lease_seconds: float = field(default=5.0, metadata=_env("HUTCH_BEAT_LEASE_SECONDS"))
    """How long the active beat's lease lasts unrenewed (it is renewed every poll): a
    standby takes over at most this plus one poll after the active beat dies, and a
    renewal may be this minus one poll late before a standby takes over from a live
    beat. More than twice the poll interval (docs/beat.md)."""

    beat_cleanup_interval: float = field(default=300.0,
                                         metadata=_env("HUTCH_BEAT_CLEANUP_INTERVAL"))
    """Seconds between the active beat's deletions of expired results."""

    result_expires: float | None = field(default=86400.0, metadata=_env("HUTCH_RESULT_EXPIRES"))
    """Seconds a finished task's row is kept (a timedelta is accepted); ``None`` (env:
    ``none``) keeps rows for ever. Deleted by the active beat, in batches."""

    result_cleanup_batch: int = field(default=1000, metadata=_env("HUTCH_RESULT_CLEANUP_BATCH"))
    """Rows deleted per statement by the result cleanup (short transactions, no long locks)."""

    # -- the dashboard, hutch web (docs/dashboard.md) ------------------------------------
    web_host: str = field(default="127.0.0.1", metadata=_env("HUTCH_WEB_HOST"))
    """Address ``hutch web`` listens on. On a loopback address it may run open; on any
    other it refuses to start without authentication configured (hutch.web.security)."""

    web_port: int = field(default=5555, metadata=_env("HUTCH_WEB_PORT"))
    """TCP port of ``hutch web``; 0 takes any free one (named in its log and STATUS)."""

    web_url_prefix: str = field(default="", metadata=_env("HUTCH_WEB_URL_PREFIX"))
    """Path every page and endpoint of ``hutch web`` is served under (``/hutch``), for a
    reverse proxy that forwards that path as it is; empty: the root."""

    web_users: dict[str, dict[str, Any]] = field(
        default_factory=dict, metadata=_env("HUTCH_WEB_USERS", secret=True))
    """Who may log in to ``hutch web`` with HTTP basic: ``{user: {"password_hash": ...,
    "role": "read" | "admin"}}`` (env: the same as JSON). Hashes come from ``hutch web
    hash-password`` (argon2id), never a password itself. Any user turns authentication
    on (hutch.web.auth)."""

    web_tokens: bool = field(default=False, metadata=_env("HUTCH_WEB_TOKENS"))
    """Accept bearer tokens from ``hutch_web_tokens`` (``hutch web token create``) on
    ``hutch web``; true turns authentication on, even with no ``web_users``."""

    web_trust_proxy: bool = field(default=False, metadata=_env("HUTCH_WEB_TRUST_PROXY"))
    """Believe ``X-Forwarded-Proto`` (a reverse proxy terminating TLS in front of
    ``hutch web``): cookies are then marked ``Secure`` when it says ``https``. Only
    when nothing but the proxy can reach ``hutch web``."""

    web_access_log: bool = field(default=True, metadata=_env("HUTCH_WEB_ACCESS_LOG"))
    """Log one line per request of ``hutch web`` (method, path without the query, status,
    milliseconds, user, client address) on the ``hutch.web.access`` logger."""

    def __setattr__(self, name: str, value: Any) -> None:
        name = celery_names.hutch_name(name, _FIELDS)  # Celery's names too (docs/celery.md)
        super().__setattr__(name, _validate(name, value))
        self.__dict__.setdefault("_sources", {})[name] = APP

    def __post_init__(self) -> None:
        self.__dict__["_sources"] = dict.fromkeys(_FIELDS, DEFAULT)

    if not TYPE_CHECKING:  # to type checkers a misspelt setting stays an error
        def __getattr__(self, name: str) -> Any:
            """Celery's names read back: ``app.conf.CELERY_TIMEZONE`` is ``timezone``'s
            value (warning once per name, as when set); a name hutch refuses or does not
            know is NoSuchSetting, with the reason."""
            if name.startswith("_") or name in _FIELDS:  # not set yet: in __init__
                raise AttributeError(name)
            try:
                target = celery_names.hutch_name(name, _FIELDS)
            except ConfigurationError as exc:
                raise NoSuchSetting(f"app.conf.{name}: {exc}") from None
            return getattr(self, target)

    def __getitem__(self, name: str) -> Any:
        """``app.conf["task_serializer"]``, Celery's mapping style; Celery's names too."""
        if not isinstance(name, str):
            raise NoSuchSetting(f"app.conf[{name!r}]: setting names are strings")
        return getattr(self, name)

    def get(self, name: str, default: Any = None) -> Any:
        """``app.conf.get(name, default)``: ``default`` for a name that is no setting;
        a name hutch refuses still raises, saying why."""
        current = celery_names.OLD_NAMES.get(name, name)
        if not {name, current} & (_FIELDS.keys() | celery_names.CELERY_NAMES.keys()):
            return default
        return self[name]

    def update(self, mapping: Mapping[str, Any] | None = None, /, **values: Any) -> None:
        """Set several settings at once, from a mapping and/or keywords (Celery's
        ``conf.update``); unknown names are an error."""
        for name, value in {**(mapping or {}), **values}.items():
            setattr(self, name, value)

    def set_from(self, source: str, **values: Any) -> None:
        """:meth:`update`, recording ``source`` (``flag --broker``...) as where the
        values came from, for ``hutch config show``."""
        for given, value in values.items():
            name = celery_names.hutch_name(given, _FIELDS)
            setattr(self, name, value)
            self.__dict__["_sources"][name] = source

    def source_of(self, name: str) -> str:
        """Where the value of setting ``name`` came from: ``default``, ``app``,
        ``file PATH``, ``env VAR`` or ``flag --NAME``."""
        if name not in _FIELDS:
            raise ConfigurationError(f"unknown setting {name!r}")
        sources: dict[str, str] = self.__dict__["_sources"]
        return sources[name]

    def apply_environment(self, environ: os._Environ[str] | dict[str, str] | None = None) -> None:
        """Override settings from ``HUTCH_*`` variables."""
        self._apply(read_environment(environ))

    def apply_config_file(self, environ: os._Environ[str] | dict[str, str] | None = None) -> None:
        """Override settings from the config file (hutch.config_file: ``$HUTCH_CONFIG``,
        else ``/etc/hutch/hutch.toml`` if there is one)."""
        self._apply(read_config_file(environ))

    def _apply(self, read: Read) -> None:
        values, problems = read
        if problems:
            more = (f" (and {len(problems) - 1} more: `hutch config check` lists them)"
                    if len(problems) > 1 else "")
            raise ConfigurationError(problems[0] + more)
        for name, (value, source) in values.items():
            self.set_from(source, **{name: value})

    @classmethod
    def build(cls, broker: str | None = None, backend: str | None = None,
              **values: Any) -> Settings:
        """Defaults, then keywords, then the config file, then ``HUTCH_*`` variables:
        how apps and clients start."""
        conf = cls()
        conf.update(**values)
        if broker is not None:
            conf.broker_url = broker
        if backend is not None:
            conf.result_backend = backend
        conf.apply_config_file()
        conf.apply_environment()
        return conf

    def update_as_code(self, values: Mapping[str, Any]) -> None:
        """Set ``values`` at the precedence of ``Hutch(...)`` keywords, so the config
        file and ``HUTCH_*`` variables still override them (``config_from_object``:
        ops repoint code without editing it)."""
        self.update(values)
        for values_read, problems in (read_config_file(), read_environment()):
            self._apply(({n: v for n, v in values_read.items() if n in values}, problems))

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def masked(self) -> dict[str, Any]:
        """Every setting by name, secrets masked: what ``repr``, ``hutch config show``
        and the dashboard display (the values themselves stay usable as they are)."""
        return {f.name: _shown(f, getattr(self, f.name)) for f in dataclasses.fields(self)}

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={value!r}" for name, value in self.masked().items())
        return f"Settings({shown})"

    __str__ = __repr__


def _shown(f: dataclasses.Field[Any], value: Any) -> Any:
    """A setting as shown: ``***`` for a secret field that is set, else passwords masked."""
    if f.metadata.get("secret") and value not in (None, ""):
        return MASK
    return _masked(value)


def _masked(value: Any) -> Any:
    """``value`` with the passwords inside it masked, whatever containers hold them."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):  # keys JSON can hold: task_routes may have re.compile() ones
        return {key if isinstance(key, (str, int, float, bool)) or key is None else repr(key):
                _masked(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_masked(item) for item in value)
    return value


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
SETTING_NAMES: Final = frozenset(_FIELDS)
"""Every setting's name (Celery's lower-case names, hutch.celery_names)."""
_BY_VARIABLE = {f.metadata["env"]: f.name for f in _FIELDS.values() if f.metadata.get("env")}

Read = tuple[dict[str, tuple[Any, str]], list[str]]
"""What a source of settings holds: ``{name: (valid value, source)}``, and a problem
per value that is not valid (each naming its source and setting)."""


def read_environment(environ: os._Environ[str] | dict[str, str] | None = None) -> Read:
    """The ``HUTCH_*`` variables that are set (an empty one counts as unset)."""
    environ = os.environ if environ is None else environ
    values: dict[str, tuple[Any, str]] = {}
    problems: list[str] = []
    for var, name in _BY_VARIABLE.items():
        if environ.get(var, "") != "":
            try:
                values[name] = (_validate(name, _from_text(name, environ[var])), f"env {var}")
            except ConfigurationError as exc:
                problems.append(f"env {var}: {exc}")
    return values, problems


def read_config_file(environ: os._Environ[str] | dict[str, str] | None = None) -> Read:
    """The settings of the config file hutch.config_file locates (none when the
    default file is absent): unknown names and values of the wrong type are
    problems, named as in the file."""
    path, required = config_file.locate(environ)
    try:
        raw = config_file.read(path, required)
    except ConfigurationError as exc:
        return {}, [str(exc)]
    values: dict[str, tuple[Any, str]] = {}
    problems: list[str] = []
    for key, value in (raw or {}).items():
        try:
            if key not in _FIELDS:
                raise ConfigurationError(f"unknown setting {key!r}{_suggestion(key)}")
            values[key] = (_validate(key, _from_toml(key, value)), f"file {path}")
        except ConfigurationError as exc:
            problems.append(f"file {path}: {exc}")
    return values, problems


def _suggestion(key: str) -> str:
    """``; did you mean NAME?`` for a misspelt setting, an upper-case (Celery 3) one
    or an environment variable's name written in the file."""
    if key.upper() in _BY_VARIABLE:
        return (f" (an environment variable); the file uses the setting's name, "
                f"{_BY_VARIABLE[key.upper()]!r}")
    close = difflib.get_close_matches(key.lower(), list(_FIELDS), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _from_toml(name: str, value: Any) -> Any:
    """TOML has no null: the string ``none`` stands for it in optional settings."""
    if _FIELDS[name].type.endswith("| None") and isinstance(value, str) \
            and value.lower() in ("none", "null"):
        return None
    return value


def _from_text(name: str, text: str) -> Any:
    kind = _FIELDS[name].type
    if kind.endswith("| None") and text.lower() in ("none", "null"):
        return None
    if "bool" in kind:
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigurationError(f"{name}: expected true/false, got {text!r}")
    if kind.startswith("int"):
        try:
            return int(text)
        except ValueError:
            raise ConfigurationError(f"{name}: expected a whole number, got {text!r}") from None
    if kind.startswith("float"):
        try:
            return float(text)
        except ValueError:
            raise ConfigurationError(f"{name}: expected a number, got {text!r}") from None
    if kind.startswith("tuple"):
        return tuple(p.strip() for p in text.split(",") if p.strip())
    if kind.startswith("dict"):
        try:
            return json.loads(text)
        except ValueError as exc:
            shown = MASK if _FIELDS[name].metadata.get("secret") else repr(text)
            raise ConfigurationError(f"{name}: expected a JSON object, got {shown} "
                                     f"({exc})") from None
    return text


def _validate(name: str, value: Any) -> Any:
    celery_names.refuse_value(name, value)
    check = _CHECKS.get(name)
    return check(name, value) if check else _of_declared_type(name, value)


def _of_declared_type(name: str, value: Any) -> Any:
    """The check of settings with no rule of their own: the type their field declares."""
    kind = _FIELDS[name].type
    if kind.endswith("| None") and value is None:
        return None
    if kind.startswith("bool") and not isinstance(value, bool):
        raise ConfigurationError(f"{name}: expected True or False, got {value!r}")
    if kind.startswith("int"):
        return _whole(name, value, 0)
    if kind.startswith("float"):
        return _positive_number(name, value)
    if kind.startswith("str") and (not isinstance(value, str) or not value):
        raise ConfigurationError(f"{name}: expected a non-empty string, got {value!r}")
    return value


def _one_of(choices: tuple[str, ...], optional: bool = False) -> Callable[[str, Any], Any]:
    def check(name: str, value: Any) -> Any:
        if optional and value in (None, "", "none"):
            return None
        if value not in choices:
            raise ConfigurationError(f"{name}: {value!r} is not one of {', '.join(choices)}")
        return value
    return check


def parse_autoscale(text: str) -> tuple[int, int]:
    """``"10,3"`` -> ``(10, 3)``; ``"10"`` means 10,1 (Celery's ``--autoscale``)."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        maximum, minimum = int(parts[0]), int(parts[1]) if len(parts) > 1 else 1
    except (ValueError, IndexError):
        raise ValueError(f"{text!r} is not MAX,MIN (whole numbers, e.g. 10,3)") from None
    if len(parts) > 2 or not 1 <= minimum <= maximum:
        raise ValueError(f"{text!r}: expected MAX,MIN with 1 <= MIN <= MAX")
    return maximum, minimum


def _autoscale(name: str, value: Any) -> str | None:
    if value in (None, ""):
        return None
    try:
        return "{},{}".format(*parse_autoscale(value))
    except ValueError as exc:
        raise ConfigurationError(f"{name}: {exc}") from None


def _positive_int(name: str, value: Any) -> int:
    return _whole(name, value, 1)


def _whole(name: str, value: Any, low: int, high: int | None = None) -> int:
    """``value`` if it is a whole number in low..high (a bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low \
            or (high is not None and value > high):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigurationError(f"{name}: expected a whole number {span}, got {value!r}")
    return value


def _positive_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigurationError(f"{name}: expected a number > 0, got {value!r}")
    return float(value)


def _optional_whole(low: int, high: int | None = None) -> Callable[[str, Any], int | None]:
    def check(name: str, value: Any) -> int | None:
        return None if value is None else _whole(name, value, low, high)
    return check


def _task_queues(name: str, value: Any) -> dict[str, dict[str, Any]]:
    """Shape and types of every entry; how entries combine with the defaults is
    checked per route when a topology is built (hutch.brokers.routes)."""
    if not isinstance(value, dict):
        raise ConfigurationError(f"{name}: expected a mapping of route name to queue "
                                 f"features, got {value!r}")
    out: dict[str, dict[str, Any]] = {}
    for route, spec in value.items():
        where = f"{name}[{route!r}]"
        if not isinstance(route, str) or not route:
            raise ConfigurationError(f"{name}: route names must be non-empty strings, "
                                     f"got {route!r}")
        if not isinstance(spec, dict):
            raise ConfigurationError(f"{where}: expected a mapping with keys "
                                     f"{', '.join(QUEUE_FEATURES)}, got {spec!r}")
        unknown = sorted(set(spec) - set(QUEUE_FEATURES))
        if unknown:
            raise ConfigurationError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}"
                                     f"; known: {', '.join(QUEUE_FEATURES)}")
        if "queue_type" in spec:
            _one_of(QUEUE_TYPES)(f"{where}['queue_type']", spec["queue_type"])
        for key, low, high in (("max_priority", 1, 255), ("delivery_limit", 1, None)):
            if spec.get(key) is not None:
                _whole(f"{where}[{key!r}]", spec[key], low, high)
        out[route] = dict(spec)
    return out


def _task_annotations(name: str, value: Any) -> Any:
    """The shape: None, a mapping of task name (or ``"*"``) to a mapping of task options,
    an object with ``annotate(task)``, or a list of those. Each option is checked against
    the task it is applied to (hutch.annotations), where its meaning is known."""
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if item is None or hasattr(item, "annotate"):
            continue
        if not isinstance(item, Mapping) or not all(
                isinstance(key, str) and isinstance(options, Mapping)
                for key, options in item.items()):
            raise ConfigurationError(
                f"{name}: expected {{task name or '*': {{option: value}}}}, an object with "
                f"annotate(task), or a list of them, got {item!r}")
    return value


def _module_names(name: str, value: Any) -> tuple[str, ...]:
    """Module names to import: one name, or a list, tuple or set of them."""
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple, set, frozenset)) or not all(
            isinstance(item, str) and item and all(p.isidentifier() for p in item.split("."))
            for item in items):
        raise ConfigurationError(f"{name}: expected module names such as 'proj.tasks', "
                                 f"got {value!r}")
    return tuple(items)


def _beat_schedule(name: str, value: Any) -> dict[str, dict[str, Any]]:
    """Every entry as beat will read it (Celery's format, hutch.schedules.entry); naive
    datetimes are read in the app's zone when beat syncs, which does not change validity."""
    if not isinstance(value, dict):
        raise ConfigurationError(f"{name}: expected a mapping of schedule name to entry "
                                 f"({{'task': ..., 'schedule': ...}}), got {value!r}")
    for entry_name, spec in value.items():
        if not isinstance(entry_name, str) or not entry_name:
            raise ConfigurationError(f"{name}: schedule names must be non-empty strings, "
                                     f"got {entry_name!r}")
        from_config(entry_name, spec, "UTC")
    return value


def _zone(name: str, value: Any) -> str:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(f"{name}: unknown time zone {value!r}") from None
    return str(value)


def _accept(name: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (str, list, tuple, set, frozenset)):
        raise ConfigurationError(f"{name}: expected serializer names, got {value!r}")
    items = (value,) if isinstance(value, str) else tuple(value)
    for item in items:
        _one_of(SERIALIZERS)(name, item)
    return items


def broker_urls(value: str | Sequence[str]) -> list[str]:
    """The URLs of a ``broker_url`` value: a list of them, or one string of them
    separated by ``;`` (blank entries dropped)."""
    parts = value.split(";") if isinstance(value, str) else [str(part) for part in value]
    return [part.strip() for part in parts if part.strip()]


def _broker(name: str, value: Any) -> str:
    """One URL or several RabbitMQ nodes' (a list, or ``;``-separated), kept as one
    ``;``-separated string."""
    if not isinstance(value, (str, list, tuple)):
        raise ConfigurationError(f"{name}: expected a URL or a list of URLs, got {value!r}")
    urls = broker_urls(value)
    if not urls:
        raise ConfigurationError(f"{name}: no URL given")
    for url in urls:
        if _scheme(name, url) not in ("amqp", "amqps", "memory"):
            raise ConfigurationError(f"{name}: {mask_url(url)!r} is not an amqp:// or "
                                     "memory:// URL")
    if len(urls) > 1 and any(_scheme(name, url) == "memory" for url in urls):
        raise ConfigurationError(f"{name}: memory:// is one in-process broker and takes no "
                                 "other URL")
    return ";".join(urls)


def _management_url(name: str, value: Any) -> str | None:
    """None, or an http(s) URL with a host and a valid port (RabbitMQ's management API)."""
    if value in (None, ""):
        return None
    text = str(value)
    try:
        parts = urlsplit(text)
        usable = parts.scheme in ("http", "https") and bool(parts.hostname) \
            and (parts.port is None or parts.port > 0)
    except ValueError:
        usable = False
    if not isinstance(value, str) or not usable:
        raise ConfigurationError(f"{name}: {mask_url(text)!r} is not an http:// or https:// "
                                 f"URL (RabbitMQ's management API, http://host:15672/)")
    return value


def _backend(name: str, value: Any) -> str:
    normalize_backend_url(str(value))
    return str(value)


def _level(name: str, value: Any) -> str:
    level = str(value).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigurationError(f"{name}: {value!r} is not a log level")
    return level


def _poll(name: str, value: Any) -> float:
    seconds = _positive_number(name, value)
    if seconds > 5:
        raise ConfigurationError(f"{name}: at most 5 seconds (edits must apply within 5 s), "
                                 f"got {seconds!r}")
    return seconds


def _port(name: str, value: Any) -> int:
    return _whole(name, value, 0, 65535)


_URL_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)*")


def _url_prefix(name: str, value: Any) -> str:
    """``/hutch`` (a trailing ``/`` dropped, ``/`` alone is the root, ``""``): a path of
    plain segments, so it can be put in front of every route and link as it is."""
    prefix = value.rstrip("/") if isinstance(value, str) else None
    if prefix is None or not _URL_PREFIX.fullmatch(prefix):
        raise ConfigurationError(f"{name}: expected a path such as /hutch (or empty for the "
                                 f"root), got {value!r}")
    return prefix


WEB_ROLES = ("read", "admin")
"""Roles of ``hutch web``: ``read`` sees everything, ``admin`` also acts."""
PASSWORD_HASH_PREFIX = "$argon2"


def _web_users(name: str, value: Any) -> dict[str, dict[str, Any]]:
    """Each user a name with an argon2 hash (PHC string: salted by construction) and a
    role; a value that is not a hash (a password pasted by mistake) is refused without
    being repeated in the message."""
    if not isinstance(value, dict):
        raise ConfigurationError(f"{name}: expected a mapping of user name to "
                                 f'{{"password_hash": ..., "role": ...}}')
    for user, spec in value.items():
        where = f"{name}[{user!r}]"
        if not isinstance(user, str) or not user or ":" in user:
            raise ConfigurationError(f"{name}: user names must be non-empty strings "
                                     f"without ':', got {user!r}")
        if not isinstance(spec, dict) or set(spec) != {"password_hash", "role"}:
            raise ConfigurationError(f"{where}: expected exactly the keys password_hash "
                                     f"and role")
        _one_of(WEB_ROLES)(f"{where}['role']", spec["role"])
        digest = spec["password_hash"]
        if not isinstance(digest, str) or not digest.startswith(PASSWORD_HASH_PREFIX):
            raise ConfigurationError(f"{where}['password_hash']: not an argon2 hash (make "
                                     f"one with `hutch web hash-password`)")
    return {user: dict(spec) for user, spec in value.items()}


def _optional_seconds(name: str, value: Any) -> float | None:
    if value is None:
        return None
    return _seconds(name, value)


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    return _positive_number(name, value)


_CHECKS = {
    "beat_poll_interval": _poll,
    "beat_lease_seconds": _positive_number,
    "beat_cleanup_interval": _positive_number,
    "result_expires": _optional_seconds,
    "result_cleanup_batch": _positive_int,
    "worker_heartbeat_interval": _positive_number,
    "worker_heartbeat_retention": _seconds,
    "worker_pool": _one_of(POOLS),
    "worker_autoscale": _autoscale,
    "worker_autoscale_keepalive": _positive_number,
    "worker_max_tasks_per_child": _optional_whole(1),
    "worker_max_memory_per_child": _optional_whole(1),
    "log_format": _one_of(LOG_FORMATS),
    "task_serializer": _one_of(SERIALIZERS),
    "task_compression": _one_of(COMPRESSIONS, optional=True),
    "accept_content": _accept,
    "worker_concurrency": _positive_int,
    "worker_prefetch_multiplier": _positive_int,
    "result_batch_max": _positive_int,
    "revoke_retention": _positive_number,
    "task_queues": _task_queues,
    "task_routes": routing.check_routes,
    "task_annotations": _task_annotations,
    "imports": _module_names,
    "include": _module_names,
    "beat_schedule": _beat_schedule,
    "task_queue_type": _one_of(QUEUE_TYPES),
    "delay_queue_type": _one_of(QUEUE_TYPES, optional=True),
    "task_queue_max_priority": _optional_whole(1, 255),
    "task_default_priority": _optional_whole(0, 255),
    "worker_max_lost_attempts": _positive_int,
    "worker_max_message_bytes": _positive_int,
    "timezone": _zone,
    "broker_url": _broker,
    "broker_failover_strategy": _one_of(FAILOVER_STRATEGIES),
    "broker_management_url": _management_url,
    "result_backend": _backend,
    "log_level": _level,
    "web_port": _port,
    "web_url_prefix": _url_prefix,
    "web_users": _web_users,
}


def normalize_backend_url(url: str) -> str:
    """Turn a Celery-style or plain URL into the SQLAlchemy URL hutch connects with."""
    if url.startswith("db+"):
        url = url[3:]
    scheme = _scheme("result_backend", url)
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg" + url[len(scheme):]
    if scheme in ("sqlite", "postgresql+psycopg"):
        return url
    raise ConfigurationError(
        f"result_backend: {mask_url(url)!r} is not a sqlite:// or postgresql:// URL")


def _scheme(name: str, url: str) -> str:
    try:
        return urlsplit(url).scheme
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        raise ConfigurationError(f"{name}: {mask_url(url)!r} is not a valid URL ({exc})") from None


_URL_CREDENTIALS = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s;,'\"]*):(?P<secret>[^@\s;,'\"]+)@", re.IGNORECASE)
_SECRET_PARAMETERS = re.compile(
    r"(?P<head>(?<![\w.-])(?:password|passwd|pass|pwd|sslpassword|secret|token|api_key|apikey)=)"
    r"(?P<secret>[^&;#\s'\"]*)", re.IGNORECASE)
MASK = "***"


def mask_secrets(text: str) -> str:
    """``text`` with every password in it replaced by ``***``: the password of each URL
    (``scheme://user:PASSWORD@host``, several URLs in one string included) and the value
    of query parameters that carry one (``?password=``, ``&sslpassword=``, ``token=`` ...).

    The one masking rule of hutch: settings' reprs, error messages, log lines (a
    processor in hutch.logs) and CLI output all go through it."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m['head']}:{MASK}@", text)
    return _SECRET_PARAMETERS.sub(lambda m: f"{m['head']}{MASK}", text)


def mask_url(url: str) -> str:
    """The URL with its password(s) replaced by ``***``, for logs and error messages."""
    return mask_secrets(url)
