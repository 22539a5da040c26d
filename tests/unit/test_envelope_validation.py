"""Every header and body field is checked when a message is decoded (hutch.envelope); a bad
one is a MessageError/SerializationError naming the field, never anything else (issue #10)."""

from __future__ import annotations

import bz2
import dataclasses
import datetime as dt
import gzip
import json
import lzma
import tracemalloc
import uuid
import zlib
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from apps.tasks import make_app
from hutch import chain, chord, group
from hutch.call_options import CALL_OPTIONS
from hutch.config import Settings
from hutch.errors import (
    ConfigurationError,
    MessageError,
    MessageTooLarge,
    SerializationError,
)
from hutch.messages import (
    OPTIONS,
    TaskMessage,
    Wire,
    check_signature,
    delay_ticks,
    peek_identity,
    refused,
    replayable,
)
from hutch.serialization import from_primitive, to_primitive, unpack
from hutch.workflows.canvas import Signature
from hutch.workflows.plan import Planner
from support.malformed import malformed_envelopes

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def wire(headers: dict[str, Any] | None = None, body: dict[str, Any] | None = None,
         **changes: Any) -> Wire:
    """A valid message's wire form with ``headers``/``body`` entries replaced (None: dropped)."""
    base = TaskMessage(task="tests.add", id="id-1", args=(1, 2)).encode()
    payload = json.loads(base.body)
    for key, value in (body or {}).items():
        payload[key] = value
    merged = {**base.headers, **(headers or {})}
    return dataclasses.replace(base, body=json.dumps(payload).encode(),
                               headers={k: v for k, v in merged.items() if v is not None},
                               **changes)


def refusal(w: Wire) -> str:
    with pytest.raises((MessageError, SerializationError)) as info:
        TaskMessage.decode(w)
    return str(info.value)


# -- headers ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "value", "says"), [
    ("eta", "tomorrow-ish", "header 'eta': not an ISO 8601 time: 'tomorrow-ish'"),
    ("expires", 17, "header 'expires': expected an ISO 8601 time string, got 17"),
    ("sent_at", "", "header 'sent_at': not an ISO 8601 time"),
    ("retries", -1, "header 'retries': expected a whole number 0..2147483647"),
    ("retries", 2**40, "header 'retries': expected a whole number"),
    ("retries", "3", "header 'retries'"),
    ("lost_attempts", True, "header 'lost_attempts'"),
    ("id", "x" * 156, "header 'id': longer than 155 characters"),
    ("id", 42, "header 'id': expected a non-empty string, got 42"),
    ("parent_id", {"a": 1}, "header 'parent_id'"),
    ("group_id", "nul\x00", "header 'group_id': contains a NUL character"),
    ("task", "", "header 'task'"),
    ("queue", "." * 61, "header 'queue': route name too long"),
    ("time_limit", float("nan"), "header 'time_limit'"),
    ("soft_time_limit", -1, "header 'soft_time_limit'"),
    ("ignore_result", "yes", "header 'ignore_result': expected true or false"),
    ("republished", 1, "header 'republished'"),
    ("continued", "yes", "header 'continued'"),
    ("schedule_name", ["x"], "header 'schedule_name'"),
    ("rate_slot", "soon", "header 'rate_slot'"),
    ("notify", "client.#", "header 'notify': expected 1-200 ASCII letters"),
    ("notify", "", "header 'notify'"),
    ("notify", "x" * 201, "header 'notify'"),
    ("notify", "clïent", "header 'notify'"),
    ("notify", 7, "header 'notify'"),
])
def test_each_header_is_checked_and_named(header, value, says):
    assert says in refusal(wire({header: value}))


@pytest.mark.parametrize("version", [99, 2, 0, "1", True, 1.0])
def test_another_protocol_version_is_refused_naming_the_one_spoken(version):
    assert refusal(wire({"hutch": version})).endswith("it reads hutch protocol 1 only")


def test_a_message_without_a_version_is_refused():
    assert "no protocol version header 'hutch'" in refusal(wire({"hutch": None}))


@pytest.mark.parametrize("header", ["task", "queue"])
def test_required_headers(header):
    assert f"'{header}' missing" in refusal(wire({header: None}))


def test_the_id_falls_back_to_the_message_id_but_a_bad_id_header_does_not():
    assert TaskMessage.decode(wire({"id": None}, message_id="from-property")).id == \
        "from-property"
    assert "'id' missing" in refusal(wire({"id": None}, message_id=""))
    assert peek_identity(wire({"id": 7}, message_id="looks-fine")) == (None, "tests.add")
    assert peek_identity(wire({"id": None}, message_id="m")) == ("m", "tests.add")


def test_unknown_headers_are_ignored():
    assert TaskMessage.decode(wire({"traceparent": "00-abc", "x-death": [{}]})).id == "id-1"


def test_an_unreadable_eta_counts_as_due_so_a_worker_refuses_it():
    assert delay_ticks(wire({"eta": "tomorrow-ish"}), NOW) == 0
    assert delay_ticks(wire({"eta": "2026-01-01T00:00:01+00:00"}), NOW) == 8


# -- body ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value", "says"), [
    ("args", "abc", "body field args: expected a list, got 'abc'"),
    ("kwargs", [1], "body field kwargs: expected a mapping"),
    ("headers", 5, "body field headers: expected a mapping"),
    ("link", ["not-a-signature"],
     "body field link[0]: expected a signature (a mapping with 'task'), got 'not-a-signature'"),
    ("link", "tests.add", "body field link: expected a list of signatures"),
    ("link_error", [{"args": []}], "body field link_error[0].task: missing"),
    ("chord", {"counts": True}, "body field chord: group_id: missing"),
    ("chord", {"group_id": "g", "counts": "yes"}, "body field chord: counts"),
])
def test_each_body_field_is_checked_and_named(field, value, says):
    assert says in refusal(wire(body={field: value}))


def sig(name: str = "tests.add", **fields: Any) -> dict[str, Any]:
    return {"task": name, "args": [], "kwargs": {}, "options": {}, "immutable": False, **fields}


@pytest.mark.parametrize(("bad", "path"), [
    (sig(options={"link": [sig(options={"countdown": "soon"})]}),
     "link[0].options.link[0].options.countdown"),
    (sig(subtask_type="chain", kwargs={"tasks": [sig(), sig(args="x")]}),
     "link[0].kwargs.tasks[1].args"),
    (sig(subtask_type="chord", kwargs={"header": sig()}), "link[0].kwargs.body: missing"),
    (sig(subtask_type="chunks", kwargs={"task": sig(), "it": [], "n": 0}), "link[0].kwargs.n"),
    (sig(subtask_type="group", kwargs={"tasks": [sig(options={"bogus": 1})]}),
     "link[0].kwargs.tasks[0].options: unknown option 'bogus'"),
    (sig(subtask_type="tree"), "link[0].subtask_type: 'tree' is not one of"),
    (sig(options={"queue": "q" * 300}), "link[0].options.queue"),
    (sig(options={"eta": {"__hutch__": "datetime", "v": NOW.isoformat()}, "countdown": 1}),
     "either eta or countdown"),
    (sig(options={"task_id": "x" * 200}), "link[0].options.task_id"),
    (sig(options={"priority": 256}), "link[0].options.priority"),
    (sig(options={"link_error": "nope"}), "link[0].options.link_error: expected a signature"),
    (sig(options={"chord": {"group_id": 5}}), "link[0].options.chord: group_id"),
    (sig(options={"retry_policy": {"max_retries": -1}}),
     "link[0].options.retry_policy: max_retries"),
    (sig(options={"countdown": float("inf")}), "link[0].options.countdown"),
])
def test_nested_signatures_are_checked_to_the_bottom(bad, path):
    assert path in refusal(wire(body={"link": [bad]}))


def test_no_nesting_depth_makes_the_check_itself_fail():
    deep = sig()
    for _ in range(50_000):
        deep = sig(options={"link": [deep]})
    assert check_signature(deep) is deep
    inner = deep
    while inner["options"].get("link"):
        inner = inner["options"]["link"][0]
    inner["task"] = ""
    with pytest.raises(ValueError, match=r"\.options\.link\[0\]\.task"):
        check_signature(deep, "link[0]")


def test_signature_options_are_exactly_the_call_options():
    assert set(OPTIONS) == set(CALL_OPTIONS)


def test_real_workflow_messages_pass(tmp_path):
    """What the client and the worker's planner send is never refused."""
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}")
    add = app.tasks["tests.add"]
    errback = app.tasks["tests.errback"].s()
    flows = [
        add.s(1, 2) | add.s(3) | group(add.s(1), add.s(2)) | app.tasks["tests.xsum"].s(),
        chord([add.s(i, i) for i in range(3)], app.tasks["tests.xsum"].s()),
        add.chunks([(1, 2), (3, 4)], 1),
        add.s(1, 2).set(countdown=5, queue="other", priority=None, expires=60,
                        headers={"a": 1}, time_limit=5, soft_time_limit=4,
                        link=add.s(9), link_error=errback),
        chain(add.s(1, 1), add.s(2)).on_error(errback),
    ]
    planner = Planner(app.conf, lambda name: None)
    for flow in flows:
        for message in planner.plan(flow).messages:
            decoded = TaskMessage.decode(message.encode())
            assert decoded.link == message.link and decoded.chord == message.chord
    app.close()


# -- tagged values -----------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [
    {"__hutch__": "datetime", "v": "not-a-date"}, {"__hutch__": "datetime", "v": 5},
    {"__hutch__": "timedelta", "v": "x"}, {"__hutch__": "uuid", "v": "u"},
    {"__hutch__": "decimal", "v": "1.2.3"}, {"__hutch__": "bytes", "v": "***"},
    {"__hutch__": "tuple", "v": 5}, {"__hutch__": "set", "v": [[1]]},
    {"__hutch__": ["list"], "v": 1}, {"__hutch__": "nope", "v": 1},
])
def test_a_bad_tagged_value_is_a_serialization_error(bad):
    assert "tagged value" in refusal(wire(body={"args": [[{"k": bad}]]}))


def test_a_body_nested_too_deeply_is_a_serialization_error():
    body = b'{"args": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(SerializationError):
        TaskMessage.decode(dataclasses.replace(wire(), body=body))


# -- sizes and compressions ----------------------------------------------------------------------

PACK = {"zlib": zlib.compress, "gzip": gzip.compress, "bzip2": bz2.compress,
        "lzma": lzma.compress}


@pytest.mark.parametrize("name", PACK)
def test_unpacking_stops_at_the_limit_for_every_compression(name):
    data = b"a" * 100_000
    assert unpack(PACK[name](data), name, 100_000) == data
    with pytest.raises(MessageTooLarge, match=f"{name} body of .* unpacks to more than 99999"):
        unpack(PACK[name](data), name, 99_999)
    with pytest.raises(SerializationError, match="ends early"):
        unpack(PACK[name](data)[:-8], name, None)
    assert unpack(PACK[name](b"one") + PACK[name](b"two"), name, 6) == b"onetwo"


def test_the_wire_body_is_limited_too():
    big = wire(body={"args": ["x" * 1000]})
    with pytest.raises(MessageTooLarge, match=r"body of \d+ bytes is over the limit of 500"):
        TaskMessage.decode(big, max_bytes=500)
    assert TaskMessage.decode(big, max_bytes=len(big.body)).args == ("x" * 1000,)


def test_a_bomb_is_never_unpacked_past_the_limit():
    """256 MiB packed into ~250 KB: refused at a 4 MiB limit, with a few MiB of memory."""
    packer = zlib.compressobj(9)
    bomb = b"".join([packer.compress(b"\0" * (1 << 20)) for _ in range(256)] +
                    [packer.flush()])
    assert len(bomb) < 300_000
    tracemalloc.start()
    try:
        with pytest.raises(MessageTooLarge):
            unpack(bomb, "zlib", 4 << 20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, peak


def test_unknown_content_encodings_are_refused():
    assert "unknown content encoding 'br'" in refusal(wire(content_encoding="br"))
    assert TaskMessage.decode(wire(content_encoding="UTF-8")).id == "id-1"


# -- the dead letter's copy ------------------------------------------------------------------------

def test_a_refused_copy_is_the_message_as_received_plus_its_reason():
    original = dataclasses.replace(wire({"x-death": [{"count": 1}]}), expiration="60000")
    copy = refused(original, "hutch.errors.MessageError: bad\nthing", "w@h:1", "dead-1")
    assert copy.body == original.body and copy.message_id == original.message_id
    assert copy.expiration is None and "x-death" not in copy.headers  # must not expire
    assert copy.headers["dead_reason"] == "hutch.errors.MessageError: bad thing"
    assert copy.headers["dead_by"] == "w@h:1" and copy.headers["dead_id"] == "dead-1"
    again = replayable(copy)
    assert not {"dead_reason", "dead_by", "dead_at", "dead_id"} & set(again.headers)


# -- properties ----------------------------------------------------------------------------------

def amqp_values() -> st.SearchStrategy[Any]:
    """What an AMQP header table can carry, as pika hands it over."""
    leaves = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                       st.floats(), st.text(max_size=20), st.binary(max_size=10),
                       st.datetimes(), st.sampled_from(["2026-01-01T00:00:00", "tomorrow"]))
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)),
        max_leaves=5)


def json_values() -> st.SearchStrategy[Any]:
    """Argument values: plain, tagged as a sender tags them, or tagged wrongly (rarely)."""
    rich = st.one_of(st.datetimes(), st.dates(), st.uuids(), st.binary(max_size=4),
                     st.decimals(allow_nan=False), st.tuples(st.integers()),
                     st.frozensets(st.integers(), max_size=2)).map(to_primitive)
    wrong = st.fixed_dictionaries({"__hutch__": st.sampled_from(
        ["datetime", "uuid", "bytes", "tuple", "nope"]), "v": st.one_of(
            st.text(max_size=4), st.integers())})
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                       st.text(max_size=10), rich, rich, rich, st.integers(), st.text(), wrong)
    return st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
        max_leaves=6)


JSON_VALUES = json_values()
AMQP_VALUES = amqp_values()
GOOD_OPTIONS = st.fixed_dictionaries({}, optional={
    "countdown": st.floats(-10, 1e6), "queue": st.sampled_from(["celery", "other", ""]),
    "priority": st.none(), "expires": st.integers(1, 10**6),
    "headers": st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    "time_limit": st.floats(0, 100), "ignore_result": st.booleans(),
    "serializer": st.sampled_from(["json", "msgpack"]), "task_id": st.uuids().map(str),
    "retry_policy": st.just({"max_retries": 2})})
ANY_OPTIONS = st.dictionaries(st.sampled_from(sorted(OPTIONS) + ["bogus"]), JSON_VALUES,
                              max_size=2)


def signatures() -> st.SearchStrategy[Any]:
    """Signatures that are mostly well-formed, and wrong in one place now and then."""
    leaf = st.fixed_dictionaries({"task": st.sampled_from(["tests.add"] * 18 + ["", 5])},
                                 optional={
        "args": st.one_of(*[st.lists(st.integers(), max_size=2)] * 5, st.text(max_size=3)),
        "kwargs": st.one_of(*[st.just({})] * 5, st.dictionaries(
            st.text(max_size=3), st.integers(), max_size=1), st.integers()),
        "options": st.one_of(*[GOOD_OPTIONS] * 6, ANY_OPTIONS),
        "immutable": st.one_of(*[st.booleans()] * 5, st.integers())})
    return st.recursive(leaf, lambda inner: st.one_of(
        st.builds(lambda s, i: {**s, "options": {"link": [i]}}, leaf, inner),
        st.builds(lambda s, kind, parts: {**s, "subtask_type": kind, "kwargs": {
            "tasks": parts, "header": {"task": "x", "subtask_type": "group",
                                       "kwargs": {"tasks": parts}},
            "body": parts[0] if parts else None, "task": parts[0] if parts else None,
            "it": [[1, 2]], "n": 1}},
            leaf, st.sampled_from(["chain", "group", "chord", "chunks"] * 3 + ["odd"]),
            st.lists(inner, min_size=1, max_size=2)),
        inner.map(lambda i: [i])), max_leaves=4)


SIGNATURES = signatures()
HEADER_KEYS = st.sampled_from([
    "hutch", "task", "id", "queue", "retries", "eta", "expires", "sent_at", "parent_id",
    "root_id", "group_id", "time_limit", "soft_time_limit", "ignore_result", "schedule_name",
    "republished", "rate_slot", "lost_attempts", "origin", "other"])
BODIES = st.fixed_dictionaries({"args": st.lists(JSON_VALUES, max_size=3)}, optional={
    "kwargs": st.one_of(*[st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=2)] * 4,
                        JSON_VALUES),
    "link": st.one_of(*[st.lists(SIGNATURES, min_size=1, max_size=2)] * 4, SIGNATURES),
    "link_error": st.lists(SIGNATURES, max_size=2),
    "chord": st.one_of(*[st.none()] * 4, JSON_VALUES, st.fixed_dictionaries(
        {"group_id": st.text(max_size=5), "counts": st.booleans()})),
    "headers": st.one_of(*[st.dictionaries(st.text(max_size=4), JSON_VALUES, max_size=2)] * 4,
                         JSON_VALUES)})


@st.composite
def wires(draw: Any) -> Wire:
    headers = {"hutch": 1, "task": "tests.add", "id": str(draw(st.uuids())), "queue": "celery"}
    if draw(st.integers(0, 2)) == 0:
        headers.update(draw(st.dictionaries(HEADER_KEYS, AMQP_VALUES, max_size=3)))
    body_value = draw(st.one_of(BODIES, BODIES, BODIES, JSON_VALUES))
    body = json.dumps(body_value).encode()
    encoding = draw(st.sampled_from(["utf-8"] * 4 + ["", "zlib", "gzip", "bzip2", "lzma", "br"]))
    if encoding in PACK and draw(st.integers(0, 4)):
        body = PACK[encoding](body)
    if draw(st.integers(0, 19)) == 0:
        body = draw(st.binary(max_size=30))
    ctype = draw(st.sampled_from(["application/json"] * 20 + [
        "application/x-msgpack", "application/x-yaml", "application/x-python-serialize",
        "text/plain"]))
    return Wire(body=body, content_type=ctype, content_encoding=encoding, headers=headers,
                message_id=draw(st.sampled_from(["", "m-1", "x" * 200])),
                priority=draw(st.sampled_from([None] * 6 + [0, 9, 300])))


PLANNER = Planner(Settings(), lambda name: None)


@settings(max_examples=1000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(wires())
def test_decode_returns_a_usable_message_or_refuses_it_cleanly(w):
    """Property: decode never raises anything but MessageError/SerializationError, and what
    it lets through can be used: its callbacks build (only config-dependent refusals, as
    HutchError, remain) and it encodes again."""
    try:
        message = TaskMessage.decode(w, ("json", "msgpack", "yaml"), max_bytes=1 << 20)
    except (MessageError, SerializationError) as exc:
        event(f"refused: {type(exc).__name__}")
        return
    event(f"decoded, {len(message.link) + len(message.link_error)} callback(s)")
    assert isinstance(message.id, str) and 0 < len(message.id) <= 155
    for data in (*message.link, *message.link_error):
        try:
            sig = Signature.from_dict(data)
            for child in PLANNER.plan(sig, ("result",), parent_id=message.id).messages:
                TaskMessage.decode(child.encode())
        except (ConfigurationError, SerializationError):
            pass  # a route without priorities, a result JSON cannot carry: known at run time
    try:
        again = TaskMessage.decode(message.encode())
    except SerializationError:
        return  # e.g. a YAML body holding a value the tagging pass cannot write
    assert again.id == message.id and again.link == message.link


@settings(max_examples=1000, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(SIGNATURES)
def test_a_signature_that_passes_the_checks_can_be_sent(data):
    """Property: what check_signature accepts, the worker's planner can build and send
    (only config-dependent refusals remain, as HutchErrors), and the messages it makes
    pass the checks in turn."""
    try:
        data = from_primitive(json.loads(json.dumps(data)))
        check_signature(data, "link[0]")
    except (ValueError, SerializationError):
        event("refused")
        return
    event("accepted")
    try:
        for child in PLANNER.plan(Signature.from_dict(data), ("result",),
                                  parent_id="p").messages:
            TaskMessage.decode(child.encode())
    except (ConfigurationError, SerializationError):
        event("refused at run time")


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(malformed_envelopes("/nonexistent/marker"))
def test_every_generated_malformed_envelope_is_refused(envelope):
    """The integration test's envelopes are each refused at decode already (so a worker
    dead-letters them before anything runs)."""
    w = Wire(body=envelope.body, content_type=envelope.content_type or "",
             content_encoding=envelope.content_encoding or "", headers=envelope.headers,
             message_id=envelope.message_id or "")
    with pytest.raises((MessageError, SerializationError)):
        TaskMessage.decode(w, ("json", "msgpack", "yaml"))

