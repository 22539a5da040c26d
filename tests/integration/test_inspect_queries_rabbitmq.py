"""The read-only inspect queries of issue #13 beyond ping/active/stats, on the real
RabbitMQ and PostgreSQL with two prefork workers of two children each: reserved
(tasks prefetched behind busy children), scheduled (none on workers; the delay
ladder counted), revoked, conf and report, from both workers and from one with
``--destination``."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from hutch.config import Settings
from support.processes import TESTS_DIR
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]

NOT_HELD = "0 held (etas wait in RabbitMQ's delay ladder, not in workers)"


def hutch(env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hutch", "-A", "apps.env_app", *args],
                          env=env, capture_output=True, text=True, cwd=TESTS_DIR.parent,
                          timeout=60)


def answered(env, *args: str) -> subprocess.CompletedProcess[str]:
    done = hutch(env, *args)
    assert done.returncode == 0, done.stderr
    return done


def test_two_prefork_workers_answer_the_queries(app, env, workers):
    tag = uuid.uuid4().hex[:8]
    alpha, beta = f"alpha-{tag}@test", f"beta-{tag}@test"
    qa, qb = f"qa-{tag}", f"qb-{tag}"
    for name, queue in ((alpha, qa), (beta, qb)):
        workers(env, queues=(queue,), concurrency=2, extra_args=("-n", name)).wait_ready(2)
    both = app.control.inspect([alpha, beta], timeout=10)

    # reserved: both children of alpha busy, so what follows waits in their prefetch
    sleeping = [app.tasks["tests.sleep"].apply_async((6,), queue=qa) for _ in range(2)]
    assert eventually(lambda: len((both.active() or {}).get(alpha, [])) == 2, 20)
    waiting = [app.tasks["tests.add"].apply_async((i, 1), queue=qa) for i in range(3)]
    reserved = eventually(lambda: (lambda r: len(r[alpha]) == 3 and r)(both.reserved()), 20)
    assert reserved[beta] == []
    assert sorted((t["id"], t["name"], t["time_start"], t["acknowledged"])
                  for t in reserved[alpha]) == sorted(
        (r.id, "tests.add", None, False) for r in waiting)
    assert {t["delivery_info"]["routing_key"] for t in reserved[alpha]} == {qa}
    listed = answered(env, "inspect", "reserved", "-d", alpha, "--json")
    assert {t["id"] for t in json.loads(listed.stdout)[alpha]} <= {r.id for r in waiting}
    assert [r.get(timeout=30) for r in waiting] == [1, 2, 3]
    assert [r.get(timeout=30) for r in sleeping] == [6, 6]
    assert both.reserved() == {alpha: [], beta: []}

    # scheduled: nothing on the workers, the countdown waits in the delay ladder
    later = app.tasks["tests.add"].apply_async((2, 2), queue=qb, countdown=600)
    assert both.scheduled() == {alpha: [], beta: []}
    assert both.delayed() == 1
    text = answered(env, "inspect", "scheduled", "-t", "3")
    assert f"{alpha}: {NOT_HELD}" in text.stdout and f"{beta}: {NOT_HELD}" in text.stdout
    assert "delay ladder: 1 message waiting" in text.stdout
    one = answered(env, "inspect", "scheduled", "-d", beta, "--json")
    assert json.loads(one.stdout) == {beta: []}
    assert "delay ladder: 1 message waiting" in one.stderr

    # revoked: every child of both workers learns the id
    app.control.revoke(later.id)
    assert eventually(lambda: all(later.id in ids for ids in (both.revoked() or {}).values())
                      and len(both.revoked() or {}) == 2, 20)
    revoked = answered(env, "inspect", "revoked", "-d", beta, "--json")
    assert list(json.loads(revoked.stdout)) == [beta]
    assert later.id in json.loads(revoked.stdout)[beta]

    # conf and report: every worker, secrets masked
    conf = both.conf()
    assert conf is not None and set(conf) == {alpha, beta}
    assert conf[alpha]["topology_prefix"] == env["HUTCH_TOPOLOGY_PREFIX"]
    assert "guest:***@" in conf[alpha]["broker_url"]
    assert "worker_prefetch_multiplier" not in conf[alpha]
    every = answered(env, "inspect", "conf", "-d", alpha, "--with-defaults", "--json")
    assert set(json.loads(every.stdout)[alpha]) == set(Settings().masked())
    report = both.report()
    assert report is not None and set(report) == {alpha, beta}
    assert "transport:amqp" in report[alpha]["ok"] and "guest:***@" in report[alpha]["ok"]
    printed = answered(env, "inspect", "report", "-d", beta)
    assert f"{beta}:" in printed.stdout and "software -> hutch:" in printed.stdout
    assert "pool -> prefork concurrency 2 (child 0 of 2)" in printed.stdout
    assert ":guest@" not in printed.stdout + json.dumps(conf) + json.dumps(report)
