"""``/tasks``: the task list, and ``/tasks/{id}``: one task.

The list takes the JSON API's filters and paging in its query string (a form
submitted by GET), parsed by the same table (hutch.web.api.params), so a bad value
gets the API's message, shown beside its field with a 400. Pages are keyset pages
(``cursor``), never OFFSET; a page may hold up to :data:`PAGE_LIMIT` rows, read as
successive keyset pages of the API's largest size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ...errors import InvalidQuery, NotFound
from ...ops import tasks as ops
from ...ops.workflow import workflow
from ...results.records import ALL_STATES, RETRY, TaskRecord
from ...results.store import ResultStore
from ..api.params import PAGING, TASK_FILTERS, parse, path_id, task_filters
from .common import endpoint, install_filters, query, runtime, when
from .render import Pages

if TYPE_CHECKING:
    from ...app import Hutch

PAGE_LIMIT = 1000
"""The most rows one page of the list shows."""
COLUMNS = (("created", "created"), ("started", "started"), ("finished", "finished"),
           ("name", "name"), ("state", "state"))
"""Sortable columns: (sort key, header label)."""
LIVE_SECONDS = 5
NOTE_LENGTH = 300
"""The most characters of a retried attempt's error the timeline shows."""


def routes(hutch_app: Hutch, pages: Pages) -> list[Route]:
    install_filters(pages.env)
    pages.env.globals["runtime"] = runtime

    def task_list(request: Request) -> Response:
        raw = form_values(request.query_params)
        context: dict[str, Any] = {"title": "Tasks · hutch web", "raw": raw, "states": ALL_STATES,
                                   "error": None, "items": [], "next_link": None,
                                   "live_seconds": LIVE_SECONDS,
                                   "chosen": set(raw.get("state", "").split(","))}
        try:
            values = parse(raw, TASK_FILTERS + PAGING)
            limit = page_limit(values)
            sort = values.get("sort", ops.DEFAULT_SORT)
            page = read_page(hutch_app.client().store, task_filters(values),
                             values.get("cursor"), limit, sort)
        except InvalidQuery as exc:
            context["error"] = exc
            context.update(links(raw, ops.DEFAULT_SORT))
            return pages.render(request, "tasks.html", context, status_code=400)
        context.update(links(raw, sort), items=page.items)
        if page.next_cursor:
            context["next_link"] = query(raw, cursor=page.next_cursor)
        return pages.render(request, "tasks.html", context)

    def task_page(request: Request) -> Response:
        parse(request.query_params, ())
        task_id = path_id(request, "task_id")
        store = hutch_app.client().store
        record = ops.task_detail(store, task_id)
        if record is None:
            raise NotFound(f"no task {task_id!r} in the result database", "task_id")
        return pages.render(request, "task.html", {
            "title": f"Task {task_id} · hutch web", "task": record,
            "timeline": timeline(record, ops.attempts_of(store, task_id)),
            "flow": workflow(store, record)})

    return [Route("/tasks", endpoint(pages, task_list), name="tasks"),
            Route("/tasks/{task_id:path}", endpoint(pages, task_page), name="task")]


def form_values(params: QueryParams) -> dict[str, str]:
    """The query as the API reads it: the form's repeated ``state`` boxes joined by commas."""
    values = {name: params[name] for name in params}
    states = params.getlist("state")
    if len(states) > 1:
        values["state"] = ",".join(states)
    return values


def page_limit(values: Mapping[str, Any]) -> int:
    limit: int = values.get("limit", ops.DEFAULT_LIMIT)
    if not 1 <= limit <= PAGE_LIMIT:
        raise InvalidQuery(f"limit must be between 1 and {PAGE_LIMIT}", "limit")
    return limit


def read_page(store: ResultStore, filters: ops.TaskFilters, cursor: str | None, limit: int,
              sort: str) -> ops.TaskPage:
    """``limit`` rows after ``cursor``, read as keyset pages of at most the API's size."""
    items: list[TaskRecord] = []
    while True:
        page = ops.list_tasks(store, filters, after=cursor, sort=sort,
                              limit=min(ops.MAX_LIMIT, limit - len(items)))
        items += page.items
        cursor = page.next_cursor
        if cursor is None or len(items) >= limit:
            return ops.TaskPage(items, cursor, sort)


def links(raw: Mapping[str, str], sort: str) -> dict[str, Any]:
    """The sort links of the column headers (same filters, first page) and the first page's."""
    kept = {k: v for k, v in raw.items() if k != "cursor"}
    heads = {}
    for key, label in COLUMNS:
        ascending_first = key in ("name", "state")
        if sort == key:
            target, mark = f"-{key}", " ▲"
        elif sort == f"-{key}":
            target, mark = key, " ▼"
        else:
            target, mark = (key if ascending_first else f"-{key}"), ""
        heads[key] = (query(kept, sort=target), label + mark)
    return {"heads": heads, "first_link": query(kept), "sort": sort,
            "on_first_page": "cursor" not in raw}


def timeline(record: TaskRecord,
             attempts: Sequence[ops.Attempt] = ()) -> list[tuple[str, Any, str]]:
    """What is known of the task's life, in order: (event, time or None, note). The
    row keeps the times of its last attempt; each retried one is in ``attempts``."""
    events: list[tuple[str, Any, str]] = [("sent", record.created_at, "the row was created")]
    if record.eta is not None and not (attempts and attempts[-1].eta == record.eta):
        events.append(("due", record.eta, "its eta or countdown"))
    retried = record.retries + (record.state == RETRY)
    if retried > len(attempts):  # retried before hutch_task_attempts (migration 0011)
        missing = retried - len(attempts)
        events.append(("retried", None, f"{missing} earlier attempt{'s' if missing > 1 else ''}"
                       ": times not recorded"))
    for attempt in attempts:
        events += attempt_events(attempt)
    if attempts and attempts[-1].attempt == record.retries:  # the row's attempt was retried
        events.append(after_last_retry(record))
    else:
        events += last_attempt(record)
    if record.expires is not None:
        events.append(("expires", record.expires, "not run after this time"))
    return events


def attempt_events(attempt: ops.Attempt) -> list[tuple[str, Any, str]]:
    """A retried attempt: when it started, and how it failed."""
    number = f"attempt {attempt.attempt + 1}"
    failure = f"{attempt.exception_type}: {attempt.exception_message or ''}" \
        if attempt.exception_type else "an error"
    due = f" (next due at {when(attempt.eta)})" if attempt.eta else ""
    return [(f"{number} started", attempt.started_at, f"on {attempt.worker or 'a worker'}"),
            (f"{number} failed", attempt.retried_at, f"with {failure[:NOTE_LENGTH]}, "
                                                     f"retried{due}")]


def after_last_retry(record: TaskRecord) -> tuple[str, Any, str]:
    """What follows when the row's own attempt is the last retried one: the next one
    waiting for its eta, or the end a RETRY row can come to without running (revoked)."""
    if record.state == RETRY:
        return ("next due", record.eta, f"attempt {record.retries + 2}, not received yet")
    return ("finished", record.finished_at, record.state)


def last_attempt(record: TaskRecord) -> list[tuple[str, Any, str]]:
    """The row's own times: its last attempt's."""
    number = f"attempt {record.retries + 1}"
    ended = "will retry at its eta" if record.state == RETRY else record.state
    return [("received", record.received_at, f"by a worker ({number})"),
            ("started", record.started_at, number),
            ("finished" if record.finished_at else "not finished", record.finished_at,
             ended if record.finished_at else f"now {record.state}")]
