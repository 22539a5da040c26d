"""Malformed messages, published with raw pika, mixed into a good load (issue #10, items
1-4): each malformed one ends in the dead-letter queue once, with its reason, and never
runs; the good ones all run once; the worker stays up and does not loop on them."""

from __future__ import annotations

import json
import uuid
import zlib
from collections import Counter
from dataclasses import replace

import pika
import pytest

from hutch.brokers.amqp.params import pika_parameters
from hutch.brokers.amqp.publisher import properties_for
from hutch.call_options import build_message
from hutch.config import Settings
from hutch.messages import Wire
from hutch.ops.deadletters import list_dead
from support.waiting import eventually

pytestmark = [pytest.mark.postgres, pytest.mark.faults]

BOMB_BYTES = 70 * 2**20
"""Unpacked size of the compressed body: over the default 64 MB message cap."""


def good_wire(app, run_log: str) -> Wire:
    task = app.tasks["faults.record"]
    return build_message(task.name, (run_log, 0.0), {}, {}, app.conf, task.options).encode()


def with_id(wire: Wire, task_id: str, **headers) -> Wire:
    return replace(wire, message_id=task_id, headers={**wire.headers, "id": task_id, **headers})


def with_body(wire: Wire, body: dict, compress: bool = False) -> Wire:
    data = json.dumps(body).encode()
    if compress:
        return replace(wire, body=zlib.compress(data, 9), content_encoding="zlib")
    return replace(wire, body=data, content_encoding="utf-8")


def malformed(app, run_log: str) -> dict[str, Wire]:
    """One of each kind the issue names, under a fresh id each time."""
    base, fresh = good_wire(app, run_log), lambda: str(uuid.uuid4())
    body = json.loads(base.body)
    return {
        "eta that cannot be parsed": with_id(base, fresh(), eta="tomorrow-ish"),
        "tagged argument that cannot be decoded": with_body(with_id(base, fresh()), {
            **body, "args": [run_log, {"__hutch__": "datetime", "v": "not-a-date"}]}),
        "link that is not a signature": with_body(with_id(base, fresh()), {
            **body, "link": ["not-a-signature"]}),
        "compressed body over the size cap": with_body(with_id(base, fresh()), {
            **body, "kwargs": {"padding": "0" * BOMB_BYTES}}, compress=True),
        "unknown protocol version": with_id(base, fresh(), hutch=99),
    }


def test_malformed_messages_mixed_into_a_good_load(fault_world, ledger, scale, fault_workers):
    app, db = fault_world.app, fault_world.db
    amqp_url, topology_prefix = fault_world.amqp_url, fault_world.prefix
    worker = fault_workers(fault_world.env, pool="prefork", concurrency=2)
    conn = None
    try:
        worker.wait_ready(count=2)
        join = ledger.producers(app, scale.good_tasks, threads=2)
        conn = pika.BlockingConnection(pika_parameters(amqp_url, Settings(), "faults raw"))
        channel = conn.channel()
        channel.confirm_delivery()
        bad: dict[str, str] = {}  # task id -> kind
        for _ in range(scale.malformed_copies):
            ledger.wait_runs(scale.good_tasks // (2 * scale.malformed_copies), timeout=60)
            for kind, wire in malformed(app, ledger.run_log).items():
                channel.basic_publish(f"{topology_prefix}.celery", "celery", wire.body,
                                      properties_for(wire), mandatory=True)
                bad[wire.message_id] = kind
        join(120)
        finished = ledger.wait_finished(db, timeout=120)
        client = app.client()

        def dead_letters() -> list:
            return list_dead(client, "celery", limit=10 * len(bad) + 10)

        eventually(lambda: set(bad) <= {d.task_id for d in dead_letters()}, 30)
        dead = dead_letters()
        ledger.notes["malformed"] = len(bad)
        report = ledger.account(db)
        assert finished, report.summary()
        report.assert_no_loss()
        assert report.run_twice == 0 and report.failed == 0, report.summary()
        copies = Counter(d.task_id for d in dead)
        assert {bad[i]: copies[i] for i in bad} == {bad[i]: 1 for i in bad}, \
            "each malformed message dead-lettered exactly once"
        reasons = {bad[d.task_id]: d.reason for d in dead if d.task_id in bad}
        vague = {kind: r for kind, r in reasons.items()
                 if r.strip() in ("", "rejected", "unknown")}
        assert not vague, f"dead-lettered without a reason: {vague}"
        assert "version" in reasons["unknown protocol version"].lower()
        assert not {r.task_id for r in ledger.runs()} & set(bad), "a malformed message ran"
        noise = {bad[i]: worker.output().count(i) for i in bad}
        assert max(noise.values()) <= 10, f"the worker looped on a message: {noise}"
        assert worker.proc.poll() is None, worker.output()[-3000:]
    finally:
        if conn is not None and conn.is_open:
            conn.close()
