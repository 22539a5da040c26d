"""The dashboard's actions, shared by its pages (a confirm form, then a POST) and its
JSON API (``POST /api/v1/...``): revoke, terminate and retry a task, replay and
purge dead letters, and steer a worker (shutdown, pool, consumers, rate limits).

Each :class:`Action` names its target (a task id, a queue, a worker) and its input
fields; :meth:`Actions.perform` checks the input (an :class:`InvalidQuery` naming the
field, before anything is done), runs the operator tool of hutch.ops in a thread
(they are synchronous), and writes one ``hutch_audit`` row with the outcome,
whether it worked or not: who (the principal), their role, the action, the target,
the input and the error, and the client's address. Input refused before the
action is tried is not written: nothing was done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..client.revocation import task_ids
from ..config import mask_secrets
from ..envelope import NAME_LENGTH, route
from ..errors import (
    ActionFailed,
    ConfigurationError,
    InvalidQuery,
    NotFound,
    SerializationError,
)
from ..logs import get_logger
from ..messages import signal_name
from ..ops import deadletters
from ..ops.audit import AuditLog, entry
from ..results.records import FAILURE, REVOKED
from ..results.workers import WorkerStore
from ..serialization import from_primitive
from ..tasks import parse_rate
from .auth import actor_of

if TYPE_CHECKING:
    from ..app import Hutch

log = get_logger("hutch.web")

WORKER_TIMEOUT = 2.0
"""Seconds a worker command waits for the worker's answer."""
RETRIABLE = (FAILURE, REVOKED)
"""States whose task the dashboard may retry (a new task with the same arguments)."""
RETRY_HEADER = "retry_of"
"""The application header (``self.request.headers``) a retried task carries: the old id."""
TEXT, WHOLE, FLAG = "text", "integer", "boolean"


@dataclass(frozen=True)
class Field:
    """One input of an action, as a form shows it and as a JSON body names it."""

    name: str
    label: str
    kind: str = TEXT
    required: bool = False
    default: Any = None
    check: Callable[[Any], Any] | None = None
    """Raises ValueError or ConfigurationError for a bad value (its text is shown)."""
    hint: str = ""
    """An example, shown in the empty input."""

    def schema(self) -> dict[str, Any]:
        kinds = {TEXT: "string", WHOLE: "integer", FLAG: "boolean"}
        return {"type": kinds[self.kind]}


@dataclass(frozen=True)
class Outcome:
    """What an action did: a sentence for the page, and the details for the API."""

    message: str
    data: dict[str, Any] = field(default_factory=dict)


Runner = Callable[["Hutch", str, dict[str, Any]], Outcome]


@dataclass(frozen=True)
class Action:
    """One action: ``name`` (``task.revoke``), how the confirm page asks (``question``
    with ``{target}``, ``verb`` on its button), what its target is, its fields."""

    name: str
    verb: str
    question: str
    target: str
    """``task_id``, ``queue`` or ``hostname``: the target's name in errors and paths."""
    run: Runner
    fields: tuple[Field, ...] = ()
    check: Callable[[dict[str, Any]], None] | None = None
    """Checks the values together (raises InvalidQuery)."""
    audited_as: Callable[[str, dict[str, Any]], str] | None = None
    """The audit row's target, when it is not the action's (one dead letter: its key)."""

    def parse(self, raw: Mapping[str, Any], *, strict: bool = True) -> dict[str, Any]:
        """The fields' values from a JSON body (typed) or a form (strings); absent
        ones take their default. ``strict``: a name no field has is refused."""
        known = {f.name for f in self.fields}
        unknown = sorted(set(raw) - known)
        if strict and unknown:
            raise InvalidQuery(f"unknown field {unknown[0]!r}; {self.name} takes "
                               f"{', '.join(sorted(known)) or 'none'}", unknown[0])
        values = {f.name: _value(f, raw.get(f.name)) for f in self.fields}
        if self.check is not None:
            self.check(values)
        return values


def _value(spec: Field, raw: Any) -> Any:
    if raw is None or raw == "":
        if spec.required:
            raise InvalidQuery(f"{spec.label} is required", spec.name)
        return spec.default
    value = _typed(spec, raw)
    if spec.check is not None:
        try:
            checked = spec.check(value)
        except (ValueError, ConfigurationError) as exc:
            why = str(exc).removeprefix(f"{spec.name}: ")
            raise InvalidQuery(f"{spec.label}: {why}", spec.name) from None
        value = value if checked is None else checked
    return value


def _typed(spec: Field, raw: Any) -> Any:
    if spec.kind == WHOLE:
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            raw = int(raw)
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise InvalidQuery(f"{spec.label} must be a whole number", spec.name)
        return raw
    if spec.kind == FLAG:
        if isinstance(raw, str) and raw.lower() in ("true", "on", "1", "yes", "false", "0", "no"):
            return raw.lower() in ("true", "on", "1", "yes")
        if not isinstance(raw, bool):
            raise InvalidQuery(f"{spec.label} must be true or false", spec.name)
        return raw
    if not isinstance(raw, str):
        raise InvalidQuery(f"{spec.label} must be a string", spec.name)
    if "\x00" in raw:
        raise InvalidQuery(f"{spec.label} must not hold a NUL character", spec.name)
    return raw.strip()


def _between(low: int, high: int) -> Callable[[int], None]:
    def check(value: int) -> None:
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
    return check


def _rate(value: str) -> None:
    try:
        parse_rate(value, "any")
    except ConfigurationError:
        raise ValueError(f"{value!r} is not a rate such as 10/s, 10/m, 1/h, or 0 for "
                         "none") from None


# -- the actions --------------------------------------------------------------------

def revoke(hutch_app: Hutch, task_id: str, values: dict[str, Any]) -> Outcome:
    """Celery's revoke: stored (a worker started later honours it) and broadcast."""
    terminate = values.get("signal") is not None
    sig = values.get("signal")
    marked = hutch_app.control.revoke(task_id, terminate=terminate, signal=sig)
    if marked:
        message = f"task {task_id} revoked: it had not started, and is now REVOKED"
    elif terminate:
        message = f"task {task_id} revoked: the worker running it stops it with {sig}"
    else:
        message = f"task {task_id} revoked: every worker refuses it from now on"
    return Outcome(message, {"marked": marked, "terminate": terminate, "signal": sig})


def retry(hutch_app: Hutch, task_id: str, _: dict[str, Any]) -> Outcome:
    """A new task with the old one's name, arguments and queue; the old id is its
    ``parent_id`` (the old task's children list it; ``?parent_id=OLD`` finds it) and its
    ``retry_of`` header, and it joins the old task's workflow (``root_id``)."""
    client = hutch_app.client()
    record = client.store.get(task_id)
    if record is None:
        raise NotFound(f"no task {task_id!r} in the result database", "task_id")
    if record.state not in RETRIABLE:
        raise ActionFailed(f"task {task_id} is {record.state}: only a FAILURE or REVOKED "
                           "task can be retried", 409, "task_id")
    if record.name is None or record.args is None or record.kwargs is None:
        raise ActionFailed(f"task {task_id}'s name or arguments were not recorded (JSON "
                           "cannot hold them): it cannot be retried from here", 409, "task_id")
    try:
        args, kwargs = from_primitive(record.args), from_primitive(record.kwargs)
        sent = client.submit(record.name, *args, kwargs=kwargs,
                             queue=record.queue or hutch_app.conf.task_default_queue,
                             parent_id=task_id, root_id=record.root_id or task_id,
                             headers={RETRY_HEADER: task_id})
    except (SerializationError, ConfigurationError, TypeError) as exc:
        raise ActionFailed(f"task {task_id} cannot be sent again: {exc}", 409,
                           "task_id") from None
    return Outcome(f"task {task_id} retried as a new task {sent.id}",
                   {"new_task_id": sent.id, "retry_of": task_id})


def replay(hutch_app: Hutch, queue: str, values: dict[str, Any]) -> Outcome:
    """One dead letter (``key``) or all of the queue's (``all``), back on their route."""
    key = values.get("key")
    ids = deadletters.replay(hutch_app.client(), queue, key or None)
    if key and not ids:
        raise NotFound(f"no dead letter {key!r} in queue {queue!r}", "key")
    what = f"dead letter {key}" if key else f"{len(ids)} dead letter(s) of {queue}"
    return Outcome(f"{what} replayed: back on the queue, to run again",
                   {"replayed": len(ids), "ids": ids[:100]})


def one_or_all(values: dict[str, Any]) -> None:
    if bool(values.get("key")) == bool(values.get("all")):
        raise InvalidQuery("name one dead letter to replay (key), or replay all, not both",
                           "key")


def purge(hutch_app: Hutch, queue: str, _: dict[str, Any]) -> Outcome:
    count = hutch_app.client().broker.purge_dead(queue)
    return Outcome(f"purged {count} dead letter(s) of {queue}", {"purged": count})


def steering(command: str) -> Runner:
    """A worker command (hutch.ops.control) sent to one worker, its answer awaited."""
    def run(hutch_app: Hutch, hostname: str, values: dict[str, Any]) -> Outcome:
        known = {w.hostname for w in WorkerStore(hutch_app.client().store).workers()}
        if hostname not in known:
            raise NotFound(f"no worker {hostname!r} in hutch_workers", "hostname")
        answers = hutch_app.control.broadcast(command, values or None, [hostname],
                                              reply=True, timeout=WORKER_TIMEOUT) or []
        reply = next((r for a in answers for h, r in a.items() if h == hostname), None)
        if reply is None:
            raise ActionFailed(f"worker {hostname} did not answer {command} within "
                               f"{WORKER_TIMEOUT:g} s", 504)
        if isinstance(reply, dict) and "error" in reply:
            raise ActionFailed(f"worker {hostname} refused {command}: {reply['error']}")
        said = reply.get("ok") if isinstance(reply, dict) else None
        return Outcome(f"worker {hostname}: {said or command + ' done'}", {"reply": reply})
    return run


def _route(value: str) -> None:
    route(value)


COUNT = Field("n", "Processes", WHOLE, default=1, check=_between(1, 1000))
QUEUE = Field("queue", "Queue", required=True, check=_route)

ACTIONS: dict[str, Action] = {a.name: a for a in (
    Action("task.revoke", "Revoke", "Revoke task {target}? No worker will run it.",
           "task_id", revoke),
    Action("task.terminate", "Terminate", "Terminate task {target}? It is revoked, and the "
           "worker running it kills it with the signal.", "task_id", revoke,
           (Field("signal", "Signal", default="SIGTERM", check=signal_name),)),
    Action("task.retry", "Retry", "Retry task {target}? A new task is sent with the same "
           "arguments.", "task_id", retry),
    Action("deadletter.replay", "Replay", "Replay dead letters of queue {target}? They go "
           "back on the queue and run again.", "queue", replay,
           (Field("key", "Dead letter"), Field("all", "Every dead letter", FLAG, default=False)),
           one_or_all, lambda queue, values: values.get("key") or queue),
    Action("deadletter.purge", "Purge", "Purge every dead letter of queue {target}? They are "
           "deleted for good (the task rows stay).", "queue", purge),
    Action("worker.shutdown", "Shut down", "Shut down worker {target}? Running tasks finish "
           "first; it does not come back unless its service restarts it.", "hostname",
           steering("shutdown")),
    Action("worker.pool_grow", "Grow", "Add processes to worker {target}'s pool?", "hostname",
           steering("pool_grow"), (COUNT,)),
    Action("worker.pool_shrink", "Shrink", "Remove processes from worker {target}'s pool?",
           "hostname", steering("pool_shrink"), (COUNT,)),
    Action("worker.add_consumer", "Add consumer", "Make worker {target} consume a queue too?",
           "hostname", steering("add_consumer"), (QUEUE,)),
    Action("worker.cancel_consumer", "Cancel consumer", "Make worker {target} stop consuming "
           "a queue? Its tasks wait in RabbitMQ.", "hostname", steering("cancel_consumer"),
           (QUEUE,)),
    Action("worker.rate_limit", "Set rate limit", "Change a task's rate limit on worker "
           "{target}?", "hostname", steering("rate_limit"),
           (Field("task_name", "Task", required=True),
            Field("rate_limit", "Rate", required=True, check=_rate,
                  hint="10/s, 10/m, 1/h; 0: none"))),
)}
"""Every action by name."""


def action_named(name: str) -> Action:
    found = ACTIONS.get(name)
    if found is None:
        raise NotFound(f"no action {name!r}; there are {', '.join(ACTIONS)}", "action")
    return found


def check_target(action: Action, target: str) -> str:
    """The target, checked as its kind (an unusable one is refused, never sent)."""
    if not target or "\x00" in target:
        raise InvalidQuery(f"{action.target} is required (and holds no NUL)", action.target)
    try:
        if action.target == "task_id":
            task_ids(target)
        elif action.target == "queue":
            route(target)
        elif len(target) > NAME_LENGTH:
            raise ValueError(f"at most {NAME_LENGTH} characters")
    except (ValueError, ConfigurationError) as exc:
        raise InvalidQuery(f"{action.target}: {exc}", action.target) from None
    return target


class Actions:
    """Runs actions for one app, writing each to the audit trail."""

    def __init__(self, hutch_app: Hutch) -> None:
        self.app = hutch_app

    async def perform(self, request: Request, name: str, target: str,
                      raw: Mapping[str, Any], *, strict: bool = True) -> Outcome:
        """Check, run (in a thread), audit; raises what the action raised."""
        action = action_named(name)
        values = action.parse(raw, strict=strict)
        target = check_target(action, target)
        try:
            outcome = await run_in_threadpool(action.run, self.app, target, values)
        except Exception as exc:
            await self._audit(request, action, target, values, error=exc)
            raise
        await self._audit(request, action, target, {**values, **outcome.data})
        return outcome

    async def _audit(self, request: Request, action: Action, target: str,
                     detail: dict[str, Any], error: Exception | None = None) -> None:
        if action.audited_as is not None:
            target = action.audited_as(target, detail)
        if error is not None:
            detail = {**detail,
                      "error": mask_secrets(f"{type(error).__name__}: {error}")[:1000]}
        record = entry(actor_of(request), action.name, target, ok=error is None,
                       detail=detail)
        await run_in_threadpool(AuditLog(self.app.client().store).record, record)
