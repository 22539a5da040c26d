"""The API described in OpenAPI 3.1 (``/api/openapi.json``) and as a plain HTML page
(``/api/docs``): no Swagger UI, whose assets would come from another origin, which the
CSP (``default-src 'self'``) forbids. Both are built from the parameter tables the
handlers parse with, so they cannot drift from the code.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ... import __version__
from .params import Param

ERROR = {"$ref": "#/components/schemas/Error"}


@dataclass(frozen=True)
class Operation:
    """One endpoint as documented: ``path`` (OpenAPI template), method, parameters."""

    path: str
    method: str
    summary: str
    params: Sequence[Param] = ()
    path_params: Sequence[str] = ()
    body: bool = False
    admin: bool = False
    found: bool = False
    """Answers 404 for an unknown id or name."""
    request: dict[str, Any] | None = None
    """The JSON body's schema (``body``), when it is not async-apply's."""
    failures: tuple[tuple[str, str], ...] = ()
    """More error answers: (status, when), e.g. an action its target refused (409)."""


def document(operations: Sequence[Operation], server: str = "/") -> dict[str, Any]:
    """The OpenAPI document of ``operations``, served under ``server`` (the URL prefix)."""
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "hutch web API", "version": __version__,
                 "description": "Read hutch's tasks, workers and queues (docs/dashboard.md, "
                                "\"JSON API\"). Errors: {\"error\": ..., \"field\": ...}."},
        "servers": [{"url": server}],
        "paths": paths,
        "components": {"schemas": {"Error": {
            "type": "object", "required": ["error", "field"],
            "properties": {"error": {"type": "string"},
                           "field": {"type": ["string", "null"]}}}}},
    }


def _operation(op: Operation) -> dict[str, Any]:
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in op.path_params]
    parameters += [{"name": p.name, "in": "query", "required": False,
                    "description": p.description, "schema": p.schema()} for p in op.params]
    responses: dict[str, Any] = {
        "200": {"description": "OK", "content": {"application/json": {"schema": {}}}},
        "400": {"description": "Bad input", "content": {"application/json": {"schema": ERROR}}},
        "503": {"description": "The database or broker does not answer",
                "content": {"application/json": {"schema": ERROR}}},
    }
    if op.found:
        responses["404"] = {"description": "Unknown id or name",
                            "content": {"application/json": {"schema": ERROR}}}
    for status, when in op.failures:
        responses[status] = {"description": when,
                             "content": {"application/json": {"schema": ERROR}}}
    out: dict[str, Any] = {"summary": op.summary + (" (admin action)" if op.admin else ""),
                           "parameters": parameters, "responses": responses}
    if op.body and op.request is not None:
        out["requestBody"] = {"required": True,
                              "content": {"application/json": {"schema": op.request}}}
    elif op.body:
        out["requestBody"] = {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "properties": {
                "args": {"type": "array"}, "kwargs": {"type": "object"},
                "countdown": {"type": "number"}, "eta": {"type": "string"},
                "expires": {"type": ["number", "string"]}, "queue": {"type": "string"},
                "priority": {"type": "integer"}},
            "additionalProperties": False}}}}
    return out


def page(operations: Sequence[Operation]) -> str:
    """The documentation page: every endpoint with its parameters, no script."""
    parts = ["<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<title>hutch web API</title>",
             "<link rel=\"stylesheet\" href=\"../static/hutch.css\"></head><body><main>",
             "<h1>hutch web API</h1>",
             "<p>The OpenAPI description: <a href=\"openapi.json\">openapi.json</a>. "
             "Errors answer <code>{\"error\": \"...\", \"field\": ...}</code> with a 4xx "
             "status (503 when the database or broker does not answer).</p>"]
    for op in operations:
        title = f"{op.method.upper()} {op.path}"
        parts.append(f"<h2><code>{html.escape(title)}</code></h2>"
                     f"<p>{html.escape(op.summary)}"
                     f"{' <strong>Admin action.</strong>' if op.admin else ''}</p>")
        if op.params:
            rows = "".join(f"<tr><td><code>{html.escape(p.name)}</code></td>"
                           f"<td>{html.escape(p.schema().get('format', p.kind))}</td>"
                           f"<td>{html.escape(p.description)}</td></tr>" for p in op.params)
            parts.append(f"<table><tr><th>parameter</th><th>type</th><th></th></tr>"
                         f"{rows}</table>")
    parts.append("</main></body></html>")
    return "\n".join(parts)
