"""Hypothesis strategies for malformed task messages, each wrong in a way a worker must refuse.

Every envelope starts as a valid message for ``tests.count_call`` (which records each run
in a marker file) and gets one fault: a header missing or of an odd type, a bad date,
a bad tagged value, garbage nested in link/link_error/chord/headers, a wrong content
type or encoding. ``why`` says which; ``task_id`` is the id a worker can still record
a row under (None when the fault took the id away).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgpack
import yaml
from hypothesis import strategies as st

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
INT64 = st.integers(-(2**63), 2**63 - 1)


@dataclass
class Envelope:
    headers: dict[str, Any]
    body: bytes
    content_type: str | None = "application/json"
    content_encoding: str | None = "utf-8"
    message_id: str | None = None
    task_id: str | None = None
    why: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    uid: str = ""
    """The id the envelope was built with (wherever it still is): see ``with_id``."""

    def with_id(self, task_id: str) -> Envelope:
        """The same envelope under another id (Hypothesis repeats its uuids, and a row
        that is FAILURE already would keep its first reason)."""
        headers = {k: task_id if k == "id" and v == self.uid else v
                   for k, v in self.headers.items()}
        return dataclasses.replace(
            self, headers=headers, uid=task_id,
            message_id=task_id if self.message_id == self.uid else self.message_id,
            task_id=task_id if self.task_id == self.uid else self.task_id)


def _not_iso(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return True
    return False


BAD_TIME = st.one_of(TEXT.filter(_not_iso), st.just("tomorrow-ish"), INT64,
                     st.lists(st.integers(), max_size=2), st.booleans())
BAD_ID = st.one_of(st.just(""), st.text(min_size=156, max_size=200), INT64, st.booleans(),
                   st.lists(TEXT, max_size=2), st.dictionaries(TEXT, st.integers(), max_size=2),
                   st.just("nul\x00inside"), st.floats(allow_nan=False, allow_infinity=False))
# A header double must be finite: RabbitMQ 3.10 closes the publishing connection
# (541 INTERNAL_ERROR) on a NaN, so such a message never reaches a worker. Bodies
# (JSON, msgpack, YAML) carry NaN and infinities, and get them below.
HEADER_FLOATS = st.floats(allow_nan=False, allow_infinity=False)
BAD_COUNT = st.one_of(st.integers(-(2**63), -1), st.integers(2**31, 2**63 - 1), TEXT,
                      HEADER_FLOATS, st.booleans())
BAD_FLAG = st.one_of(INT64, TEXT, HEADER_FLOATS, st.lists(st.booleans(), max_size=2))
BAD_HEADER_SECONDS = st.one_of(st.floats(max_value=-0.001, allow_infinity=False), TEXT,
                               st.booleans(), st.integers(10**10, 2**63 - 1))
BAD_SECONDS = st.one_of(BAD_HEADER_SECONDS, st.sampled_from([math.nan, math.inf]))
BAD_NAME = st.one_of(st.just(""), st.text(min_size=256, max_size=300), INT64,
                     st.lists(TEXT, max_size=2), st.booleans())
BAD_ROUTE = st.one_of(BAD_NAME, st.integers(61, 120).map(lambda n: "." * n))
BAD_VERSION = st.one_of(INT64.filter(lambda v: v != 1), TEXT, st.booleans(), st.just(1.0))

BAD_HEADERS = {
    "hutch": BAD_VERSION, "task": BAD_NAME, "id": BAD_ID, "queue": BAD_ROUTE,
    "retries": BAD_COUNT, "lost_attempts": BAD_COUNT,
    "eta": BAD_TIME, "expires": BAD_TIME, "sent_at": BAD_TIME, "rate_slot": BAD_TIME,
    "parent_id": BAD_ID, "root_id": BAD_ID, "group_id": BAD_ID,
    "time_limit": BAD_HEADER_SECONDS, "soft_time_limit": BAD_HEADER_SECONDS,
    "ignore_result": BAD_FLAG, "republished": BAD_FLAG, "continued": BAD_FLAG,
    "schedule_name": BAD_NAME,
}

# -- tagged values that cannot be read -------------------------------------------------
BAD_TAGS = st.one_of(
    st.tuples(st.sampled_from(["datetime", "date", "time"]), st.one_of(
        TEXT.filter(_not_iso), st.just("not-a-date"), st.integers())),
    st.tuples(st.just("timedelta"), st.one_of(TEXT, st.lists(st.integers(), max_size=2))),
    st.tuples(st.just("uuid"), st.one_of(st.just("not-a-uuid"), st.integers())),
    st.tuples(st.just("decimal"), st.one_of(st.just("1.2.3"), st.lists(TEXT, max_size=2))),
    st.tuples(st.just("bytes"), st.one_of(st.just("***"), st.integers())),
    st.tuples(st.sampled_from(["tuple", "set", "frozenset"]), st.one_of(st.integers(), TEXT)),
    st.tuples(st.sampled_from(["set", "frozenset"]), st.just([[1], [2]])),
    st.tuples(TEXT.filter(lambda k: k not in {
        "datetime", "date", "time", "timedelta", "uuid", "decimal", "bytes", "tuple", "set",
        "frozenset"}), st.integers()),
).map(lambda kv: {"__hutch__": kv[0], "v": kv[1]})

# -- signatures --------------------------------------------------------------------------
GOOD_SIG = st.builds(lambda name, args, immutable: {
    "task": name, "args": args, "kwargs": {}, "options": {}, "immutable": immutable},
    st.sampled_from(["tests.add", "tests.echo"]), st.lists(st.integers(), max_size=2),
    st.booleans())
NOT_A_MAPPING = st.one_of(TEXT, INT64, st.lists(st.integers(), max_size=2), st.none())


def _with(sig: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {**sig, **changes}


BAD_OPTIONS = st.one_of(
    st.fixed_dictionaries({"countdown": st.one_of(TEXT, st.sampled_from([math.nan, -math.inf,
                                                                          1e12]))}),
    st.fixed_dictionaries({"queue": st.one_of(INT64, st.just("q" * 300))}),
    st.fixed_dictionaries({"task_id": BAD_ID.filter(lambda v: v != "")}),
    st.fixed_dictionaries({"priority": st.one_of(st.just(256), st.just(-1), TEXT)}),
    st.fixed_dictionaries({"serializer": st.just("xml")}),
    st.fixed_dictionaries({"compression": st.just("br")}),
    st.fixed_dictionaries({"eta": st.one_of(TEXT, INT64)}),
    st.fixed_dictionaries({"expires": st.one_of(TEXT, st.just(math.inf))}),
    st.fixed_dictionaries({"retry_policy": st.one_of(st.just({"bogus": 1}),
                                                     st.just({"max_retries": -1}))}),
    st.fixed_dictionaries({"headers": st.one_of(st.lists(st.integers(), max_size=2), TEXT)}),
    st.fixed_dictionaries({"time_limit": BAD_SECONDS}),
    st.fixed_dictionaries({"ignore_result": BAD_FLAG}),
    st.fixed_dictionaries({"chord": NOT_A_MAPPING.filter(lambda v: v is not None)}),
    st.just({"eta": {"__hutch__": "datetime", "v": "2030-01-01T00:00:00+00:00"},
             "countdown": 5}),
    st.dictionaries(TEXT.filter(lambda k: k not in {
        "link", "link_error", "eta", "countdown", "expires", "retry", "retry_policy",
        "serializer", "compression", "queue", "routing_key", "priority", "task_id",
        "headers", "time_limit", "soft_time_limit", "ignore_result", "parent_id", "root_id",
        "group_id", "schedule_name", "chord"}), st.integers(), min_size=1, max_size=2),
    st.one_of(TEXT, st.lists(st.integers(), max_size=2)),
)

BAD_LEAF = st.one_of(
    NOT_A_MAPPING,
    GOOD_SIG.map(lambda s: {k: v for k, v in s.items() if k != "task"}),
    st.builds(lambda s, task: _with(s, task=task), GOOD_SIG, BAD_NAME),
    st.builds(lambda s, v: _with(s, args=v), GOOD_SIG, st.one_of(TEXT, INT64, st.just({}))),
    st.builds(lambda s, v: _with(s, kwargs=v), GOOD_SIG, st.one_of(TEXT, INT64, st.just([]))),
    st.builds(lambda s, v: _with(s, immutable=v), GOOD_SIG, BAD_FLAG),
    st.builds(lambda s, v: _with(s, options=v), GOOD_SIG, BAD_OPTIONS),
    st.builds(lambda s, v: _with(s, subtask_type=v), GOOD_SIG,
              st.one_of(TEXT.filter(lambda t: t not in {"chain", "group", "chord", "chunks"}),
                        INT64)),
    st.builds(lambda s, v: _with(s, subtask_type="chain", kwargs=v), GOOD_SIG,
              st.sampled_from([{}, {"tasks": []}, {"tasks": "abc"}])),
    st.builds(lambda s, v: _with(s, subtask_type="chord", kwargs={"header": v}), GOOD_SIG,
              GOOD_SIG),
    st.builds(lambda s, v: _with(s, subtask_type="chunks", kwargs=v), GOOD_SIG,
              st.sampled_from([{"it": [], "n": 0}, {"it": "x", "n": 2}, {"it": [], "n": 2}])),
)


def _nest(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A well-formed signature carrying a bad one somewhere inside."""
    return st.one_of(
        st.builds(lambda s, bad: _with(s, options={"link": [bad]}), GOOD_SIG, inner),
        st.builds(lambda s, bad: _with(s, options={"link_error": bad}), GOOD_SIG,
                  inner.filter(lambda b: b not in (None, []))),  # none at all: valid
        st.builds(lambda s, bad: _with(s, subtask_type="chain", kwargs={"tasks": [s, bad]}),
                  GOOD_SIG, inner),
        st.builds(lambda s, bad: _with(s, subtask_type="group", kwargs={"tasks": [bad]}),
                  GOOD_SIG, inner),
        st.builds(lambda s, bad: _with(s, subtask_type="chord", kwargs={
            "header": _with(s, subtask_type="group", kwargs={"tasks": [s]}), "body": bad}),
            GOOD_SIG, inner),
        st.builds(lambda s, bad: _with(s, subtask_type="chunks", kwargs={
            "task": bad, "it": [[1]], "n": 1}), GOOD_SIG, inner),
    )


BAD_SIGNATURE = st.recursive(BAD_LEAF, _nest, max_leaves=3)
BAD_SIGNATURE_LIST = st.one_of(
    st.one_of(TEXT.filter(bool), INT64, GOOD_SIG),  # not a list at all
    st.builds(lambda before, bad, after: [*before, bad, *after],
              st.lists(GOOD_SIG, max_size=2), BAD_SIGNATURE, st.lists(GOOD_SIG, max_size=1)),
)
BAD_MARKER = st.one_of(
    NOT_A_MAPPING.filter(lambda v: v is not None),
    st.just({"counts": True}),
    BAD_ID.map(lambda g: {"group_id": g, "counts": True}),
    BAD_FLAG.map(lambda c: {"group_id": "g-1", "counts": c}),
)


# -- envelopes ---------------------------------------------------------------------------

def _base(marker: str, task_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    headers = {"hutch": 1, "task": "tests.count_call", "id": task_id, "queue": "celery",
               "retries": 0, "origin": "hypothesis:1",
               "sent_at": "2026-01-01T00:00:00+00:00"}
    body = {"args": ["value", marker], "kwargs": {}, "link": [], "link_error": [],
            "chord": None, "headers": {}}
    return headers, body


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


@st.composite
def header_fault(draw: Any, marker: str) -> Envelope:
    task_id = str(draw(st.uuids()))
    headers, body = _base(marker, task_id)
    name = draw(st.sampled_from(sorted(BAD_HEADERS) + ["drop hutch", "drop task", "drop queue",
                                                         "drop id"]))
    if name.startswith("drop "):
        key = name[5:]
        del headers[key]
        lost = key == "id"
        return Envelope(headers, _json(body), message_id=None if lost else task_id,
                        task_id=None if lost else task_id, why=name, payload=body, uid=task_id)
    headers[name] = draw(BAD_HEADERS[name])
    lost = name == "id"
    return Envelope(headers, _json(body), message_id=task_id, why=f"header {name}",
                    task_id=None if lost else task_id, payload=body, uid=task_id)


@st.composite
def body_fault(draw: Any, marker: str) -> Envelope:
    task_id = str(draw(st.uuids()))
    headers, body = _base(marker, task_id)
    where = draw(st.sampled_from(["args", "kwargs", "headers", "tag in args", "tag in kwargs",
                                  "link", "link_error", "chord", "not a mapping"]))
    if where == "args":
        body["args"] = draw(st.one_of(TEXT, INT64, st.dictionaries(TEXT, st.integers(),
                                                                   max_size=2)))
    elif where in ("kwargs", "headers"):
        body[where] = draw(st.one_of(TEXT, INT64, st.lists(st.integers(), max_size=2)))
    elif where == "tag in args":
        bad = draw(BAD_TAGS)
        body["args"] = ["value", marker, draw(st.sampled_from([bad, [bad], {"k": [bad]}]))]
    elif where == "tag in kwargs":
        body["kwargs"] = {"extra": draw(BAD_TAGS)}
    elif where in ("link", "link_error"):
        body[where] = draw(BAD_SIGNATURE_LIST)
    elif where == "chord":
        body["chord"] = draw(BAD_MARKER)
    else:
        raw = draw(st.one_of(st.lists(st.integers(), max_size=3), TEXT, INT64))
        return Envelope(headers, json.dumps(raw).encode(), message_id=task_id,
                        task_id=task_id, why="body not a mapping", uid=task_id)
    return Envelope(headers, _json(body), message_id=task_id, task_id=task_id,
                    why=f"body {where}", payload=body, uid=task_id)


def _no_mapping(body: bytes, parse: Any) -> bool:
    try:
        return not isinstance(parse(body), dict)
    except Exception:  # noqa: BLE001 - any parse failure is what we want here
        return True


@st.composite
def content_fault(draw: Any, marker: str) -> Envelope:
    task_id = str(draw(st.uuids()))
    headers, body = _base(marker, task_id)
    plain = _json(body)
    kind = draw(st.sampled_from(["content type", "encoding", "not json", "not msgpack",
                                 "not yaml", "not compressed", "wrong compression", "pickle"]))
    ctype, encoding, data = "application/json", "utf-8", plain
    if kind == "content type":
        ctype = draw(st.one_of(st.none(), st.sampled_from(["text/plain", "application/xml"]),
                               TEXT.filter(lambda t: t not in {
                                   "application/json", "application/x-msgpack",
                                   "application/x-yaml", "application/x-python-serialize"})))
    elif kind == "encoding":
        encoding = draw(st.one_of(st.sampled_from(["br", "base64", "deflate"]), TEXT.filter(
            lambda t: t.lower() not in {"", "utf-8", "binary", "zlib", "gzip", "bzip2",
                                        "lzma"})))
    elif kind == "not json":
        data = draw(st.binary(max_size=40).filter(lambda b: _no_mapping(b, json.loads)))
    elif kind == "not msgpack":
        ctype, encoding = "application/x-msgpack", "binary"
        data = draw(st.binary(max_size=40).filter(
            lambda b: _no_mapping(b, lambda x: msgpack.unpackb(x, strict_map_key=True))))
    elif kind == "not yaml":
        ctype = "application/x-yaml"
        data = draw(st.binary(max_size=40).filter(lambda b: _no_mapping(b, yaml.safe_load)))
    elif kind == "not compressed":
        encoding = draw(st.sampled_from(["zlib", "gzip", "bzip2", "lzma"]))
    elif kind == "wrong compression":
        encoding = draw(st.sampled_from(["gzip", "bzip2", "lzma"]))
        data = zlib.compress(plain)
    else:
        ctype, encoding = "application/x-python-serialize", "binary"
    return Envelope(headers, data, ctype, encoding, message_id=task_id, task_id=task_id,
                    why=f"content {kind}", uid=task_id)


def malformed_envelopes(marker: str) -> st.SearchStrategy[Envelope]:
    return st.one_of(header_fault(marker), body_fault(marker), content_fault(marker))
