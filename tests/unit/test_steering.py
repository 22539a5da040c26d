"""Worker-wide control commands (issue #13): what prefork children post to their
supervisor through shared memory, the autoscaler's rule, and the commands' checks."""

from __future__ import annotations

import json
import os

import pytest

from hutch.config import parse_autoscale
from hutch.worker.autoscale import Autoscaler
from hutch.worker.node import Node, Order
from hutch.worker.remote import COMMANDS
from hutch.worker.steering import (
    GROW,
    HEARTBEAT,
    RING,
    SHRINK,
    SHUTDOWN,
    Adjustments,
    ChildOrders,
    OwnOrders,
    Steering,
)


def test_the_supervisor_carries_out_each_request_once_whichever_children_post_it():
    steering = Steering(3)
    children = [ChildOrders(steering, slot) for slot in range(3)]  # outboxes before fork
    for slot, child in enumerate(children):
        pid = os.fork()
        if pid == 0:
            child.carry_out(Order("t-1", GROW, 2))
            if slot == 1:
                child.carry_out(Order("t-2", SHUTDOWN))
            os._exit(0)
        assert os.waitpid(pid, 0)[1] == 0
    assert steering.collect() == [Order("t-1", GROW, 2), Order("t-2", SHUTDOWN)]
    assert steering.collect() == []
    children[2].carry_out(Order("t-1", GROW, 2))  # late, from a slow child: done already
    children[2].carry_out(Order("t-3", SHRINK, 1))
    assert steering.collect() == [Order("t-3", SHRINK, 1)]


def test_a_ring_overrun_keeps_the_latest_orders():
    steering = Steering(1)
    child = ChildOrders(steering, 0)
    for n in range(RING + 3):
        child.carry_out(Order(f"t-{n}", HEARTBEAT))
    assert [o.ticket for o in steering.collect()] == [f"t-{n}" for n in range(3, RING + 3)]


def test_children_read_the_pool_size_the_supervisor_sets():
    steering = Steering(2)
    child = ChildOrders(steering, 0)
    steering.resized(5)
    assert child.size() == 5


def test_autoscale_grows_while_all_are_busy_and_stops_the_idle_after_keepalive():
    scaler = Autoscaler(maximum=4, minimum=1, keepalive=30)
    assert scaler.decide({0: True, 1: True}, now=100.0) == (1, [])
    assert scaler.decide({0: True, 1: True}, now=100.5) == (0, [])  # one step a second
    assert scaler.decide({0: True, 1: True, 2: True}, now=101.0) == (1, [])
    assert scaler.decide({0: True, 1: True, 2: True, 3: True}, now=102.0) == (0, [])  # at max
    assert scaler.decide({0: True, 1: False, 2: True, 3: False}, now=110.0) == (0, [])
    assert scaler.decide({0: True, 1: False, 2: True, 3: False}, now=140.0) == (0, [3])
    assert scaler.decide({0: False}, now=500.0) == (0, [])  # at min


def test_autoscale_bounds_changed_under_the_pool():
    scaler = Autoscaler(maximum=4, minimum=1, keepalive=30)
    scaler.bounds(2, 2)
    assert scaler.decide({0: False}, now=1.0) == (1, [])
    assert scaler.decide({0: True, 1: False, 2: False, 3: True}, now=2.0) == (0, [2, 1])
    with pytest.raises(ValueError, match="1 <= min <= max"):
        scaler.bounds(1, 3)


@pytest.mark.parametrize(("text", "bounds"), [("10,3", (10, 3)), ("4", (4, 1)),
                                              (" 2 , 2 ", (2, 2))])
def test_parse_autoscale(text, bounds):
    assert parse_autoscale(text) == bounds


@pytest.mark.parametrize("text", ["3,10", "0,0", "a,b", "1,2,3", ""])
def test_parse_autoscale_refuses(text):
    with pytest.raises(ValueError):
        parse_autoscale(text)


def _node(orders):
    return Node("w@h", orders.pool, 2, 0, 2, "memory://", executor=None, counters=None,
                orders=orders, ticket="ticket-1")


def test_a_child_answering_after_its_sibling_judges_a_shrink_as_the_sibling_did():
    """Every child answers a broadcast pool_shrink; when one answers after the supervisor
    already shrank the pool on a sibling's post, it must not refuse the request as
    "keeps at least one" (inspect merges any refusal into the worker's reply)."""
    steering = Steering(2)
    first, late = (_node(ChildOrders(steering, slot)) for slot in (0, 1))
    assert COMMANDS["pool_shrink"](first, {"n": 1}) == {"ok": "pool will shrink"}
    [order] = steering.collect()
    steering.resized(1, order.ticket)  # the supervisor carried it out
    steering.resized(1)  # and a resize of its own (a signal, the autoscaler) came after
    assert COMMANDS["pool_shrink"](late, {"n": 1}) == {"ok": "pool will shrink"}
    assert steering.collect() == []  # the same ticket: acted on once
    late.ticket = "ticket-2"  # a new request at size 1 is refused
    with pytest.raises(ValueError, match="keeps at least one"):
        COMMANDS["pool_shrink"](late, {"n": 1})


def test_commands_check_their_arguments_before_anything_is_posted():
    steering = Steering(2)
    node = _node(ChildOrders(steering, 0))
    for command, arguments in (("pool_grow", {"n": 0}), ("pool_grow", {"n": "2"}),
                               ("pool_shrink", {"n": 2}), ("autoscale", {"max": 2, "min": 3}),
                               ("autoscale", {})):
        with pytest.raises(ValueError):
            COMMANDS[command](node, arguments)
    assert steering.collect() == []
    assert COMMANDS["pool_shrink"](node, {}) == {"ok": "pool will shrink"}
    assert COMMANDS["autoscale"](node, {"max": 4, "min": 2}) == {"ok": "autoscale now max=4 min=2"}
    assert steering.collect() == [Order("ticket-1", SHRINK, 1)]  # one ticket, one order


def test_a_worker_of_its_own_stops_and_beats_but_keeps_its_size():
    done: list[str] = []
    node = _node(OwnOrders("asyncio", 4, lambda: done.append("stop"),
                           lambda: done.append("beat")))
    assert COMMANDS["shutdown"](node, {})["ok"].startswith("shutting down")
    assert COMMANDS["heartbeat"](node, {}) == {"ok": "heartbeat will be written"}
    assert done == ["stop", "beat"]
    with pytest.raises(ValueError, match="the asyncio pool has a fixed size"):
        COMMANDS["pool_grow"](node, {"n": 1})


def test_adjustments_keep_the_latest_per_subject_for_new_children():
    steering = Steering(1)
    child = ChildOrders(steering, 0)
    child.adjusted("rate_limit", {"task_name": "a", "rate_limit": "1/s"}, "t-1")
    child.adjusted("add_consumer", {"queue": "extra"}, "t-2")
    child.adjusted("rate_limit", {"task_name": "a", "rate_limit": "5/s"}, "t-3")
    child.adjusted("rate_limit", {"task_name": "b", "rate_limit": "2/s"}, "t-4")
    kept = Adjustments(["celery"])
    for order in steering.collect():
        kept.record(order.command, json.loads(order.payload))
    assert kept.replay() == [("add_consumer", {"queue": "extra"}),
                             ("rate_limit", {"task_name": "a", "rate_limit": "5/s"}),
                             ("rate_limit", {"task_name": "b", "rate_limit": "2/s"})]
    assert kept.queues == ["celery", "extra"]
    assert kept.record("cancel_consumer", {"queue": "celery"}) is True
    assert kept.queues == ["extra"]
    assert ("cancel_consumer", {"queue": "celery"}) in kept.replay()


def test_a_worker_of_its_own_tells_its_heartbeat_the_queues_it_consumes():
    seen: list[list[str]] = []
    orders = OwnOrders("threads", 2, lambda: None, lambda: None, seen.append, ["celery"])
    orders.adjusted("add_consumer", {"queue": "extra"}, "t-1")
    orders.adjusted("rate_limit", {"task_name": "a", "rate_limit": 1}, "t-2")
    assert seen == [["celery", "extra"]]
