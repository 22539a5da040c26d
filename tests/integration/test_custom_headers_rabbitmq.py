"""Custom headers and the worker's publish signals on RabbitMQ + PostgreSQL with a
prefork worker (tests/unit/test_custom_headers.py: the same on memory://).

This process is the producer: it connects the tracer stand-in's before_task_publish
receiver (apps.header_tasks), which puts a ``traceparent`` on each message. The worker
runs ``apps.header_app``, whose module connects the same receiver and a task_prerun one
in every child: the child's task_prerun reads the header from ``task.request``, the
task returns it, and the chain's second step, published by the child, carries the
trace on."""

from __future__ import annotations

import dataclasses

import pytest

from apps import header_tasks
from apps.header_tasks import make_app
from hutch import chain, signals

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


@pytest.fixture
def app(amqp_url, postgres_url, topology_prefix):
    app = make_app(amqp_url, postgres_url, topology_prefix=topology_prefix)
    signals.before_task_publish.connect(header_tasks.trace_publish)
    yield app
    signals.before_task_publish.disconnect(header_tasks.trace_publish)
    app.close()


def test_a_traceparent_reaches_the_prefork_child_and_follows_a_chain(app, env, workers):
    w = workers(env, pool="prefork", concurrency=2, app="apps.header_app")
    w.wait_ready(count=2)
    trace = app.tasks["tests.headers.trace"]
    single = trace.apply_async(headers={"tenant": "acme"})
    steps = chain(trace.s(), trace.s()).apply_async()
    hostile = app.client().message("tests.headers.trace")
    wire = hostile.encode()
    app.client().broker.publish([("celery", dataclasses.replace(wire, headers={
        **wire.headers, "traceparent": "00-given", "nested": {"a": [1, {"b": 2}]},
        "kwargs": "shadow"}))])

    seen = single.get(timeout=30)
    assert seen["attribute"] == seen["headers"] == seen["prerun"] == f"root>{single.id}"
    assert seen["tenant"] == "acme"
    second, first = steps.get(timeout=30), steps.parent.get(timeout=30)
    assert first["prerun"] == f"root>{first['id']}"
    assert second["attribute"] == second["prerun"] == f"root>{first['id']}>{second['id']}"
    odd = app.AsyncResult(hostile.id).get(timeout=30)
    assert odd["attribute"] == odd["prerun"] == "00-given"
    assert w.stop() == 0, w.output()[-3000:]
    assert "custom headers left out of the request" in w.output()
