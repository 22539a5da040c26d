"""The delay ladder's arithmetic: rounding, routing keys, and the route a key takes.

``walk`` follows a routing key through the declared steps the way RabbitMQ's
topic exchanges do, so these tests check the topology itself, not a copy of
its formulas: where a message waits, for how long in total, and where it ends.
"""

import datetime as dt

import pytest

from hutch.brokers.amqp import ladder
from hutch.brokers.amqp.topology import BindStep, ExchangeBindStep, QueueStep, Topology
from hutch.brokers.routes import topology_for
from hutch.config import Settings
from hutch.messages import DELAY_TICK, MAX_DELAY_SECONDS, TaskMessage, delay_seconds, delay_ticks

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.timezone.utc)


def wire_due_in(seconds: float):
    return TaskMessage(task="t", id="i", eta=NOW + dt.timedelta(seconds=seconds)).encode()


@pytest.mark.parametrize("seconds, ticks", [
    (0.001, 1), (0.125, 1), (0.126, 2), (0.3, 3), (1, 8), (1.0001, 9), (10, 80),
    (3600, 28_800), (MAX_DELAY_SECONDS, ladder.MAX_TICKS)])
def test_delays_round_up_to_whole_ticks(seconds, ticks):
    wire = wire_due_in(seconds)
    assert delay_ticks(wire, NOW) == ticks
    assert delay_seconds(wire, NOW) == ticks * DELAY_TICK >= seconds


@pytest.mark.parametrize("seconds", [0, -1, -3600])
def test_due_or_past_eta_means_no_delay(seconds):
    assert delay_ticks(wire_due_in(seconds), NOW) == 0
    assert delay_ticks(TaskMessage(task="t", id="i").encode(), NOW) == 0


def test_a_delay_beyond_the_reach_is_capped_at_the_top_of_the_ladder():
    assert delay_ticks(wire_due_in(MAX_DELAY_SECONDS * 4), NOW) == ladder.MAX_TICKS


def test_routing_key_spells_the_octal_digits_least_significant_first():
    assert ladder.routing_key("celery", 0o123) == (2, "celery.3.2.1")
    assert ladder.routing_key("celery", 8) == (1, "celery.0.1")
    assert ladder.routing_key("celery", 1) == (0, "celery.1")
    assert ladder.routing_key("celery", ladder.MAX_TICKS)[0] == ladder.LEVELS - 1
    for ticks in (0, ladder.MAX_TICKS + 1):
        with pytest.raises(ValueError):
            ladder.routing_key("celery", ticks)


@pytest.mark.parametrize("route, word", [
    ("celery", "celery"), ("priority.high", "priority%2Ehigh"), ("a%2Eb", "a%252Eb"),
    ("#", "%23"), ("*", "%2A")])
def test_a_route_is_one_topic_word_and_escaping_is_injective(route, word):
    assert ladder.route_word(route) == word
    assert "." not in word and word not in ("*", "#")


def test_queue_names_and_ttls_follow_the_digit_values():
    topology = Topology("p")
    queues = {s.name: s.arguments for s in topology.ladder_steps() if isinstance(s, QueueStep)}
    assert queues["p.delay.125ms"]["x-message-ttl"] == 125
    assert queues["p.delay.875ms"]["x-message-ttl"] == 875
    assert queues["p.delay.7s"] == {"x-message-ttl": 7000,
                                    "x-dead-letter-exchange": "p.delay.level0"}
    assert queues["p.delay.125ms"]["x-dead-letter-exchange"] == "p.delay.deliver"
    assert max(a["x-message-ttl"] for a in queues.values()) == 2**27 * 1000
    assert len(queues) == len(set(queues)) == 71
    assert set(topology.ladder_queues("classic")) == set(queues)
    assert set(topology.shared_names()[1]) == set(queues) | set(
        topology.ladder_queues("quorum")), "deletion removes both ladders"
    assert all("x-expires" not in a for a in queues.values())


def test_a_quorum_ladder_has_names_of_its_own_and_dead_letters_at_least_once():
    """delay_queue_type=quorum (issue #17): the same levels, TTLs and bindings under
    P.delay.quorum, ending in the same P.delay.deliver, so a switch of type leaves the
    classic ladder to drain into the same routes."""
    classic, quorum = Topology("p"), Topology("p", ladder_type="quorum")
    steps = quorum.ladder_steps()
    queues = {s.name: s.arguments for s in steps if isinstance(s, QueueStep)}
    assert len(queues) == 71 and set(queues) == set(quorum.ladder_queues("quorum"))
    assert not set(queues) & set(classic.ladder_queues("classic"))
    assert queues["p.delay.quorum.7s"] == {
        "x-message-ttl": 7000, "x-dead-letter-exchange": "p.delay.quorum.level0",
        "x-queue-type": "quorum", "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish"}
    assert queues["p.delay.quorum.125ms"]["x-dead-letter-exchange"] == "p.delay.deliver"
    in_20s = TaskMessage(task="t", id="i", eta=dt.datetime.now(dt.timezone.utc)
                         + dt.timedelta(seconds=20)).encode()  # 160 ticks: 0o240
    assert quorum.target("work", in_20s) == ("p.delay.quorum.level2", "work.0.4.2")
    assert classic.target("work", in_20s) == ("p.delay.level2", "work.0.4.2")


# --- following keys through the declared topology -----------------------------------------

def _topic_match(pattern: str, key: str) -> bool:
    """RabbitMQ's topic rule: ``*`` is exactly one word, ``#`` zero or more."""
    def match(p: list[str], k: list[str]) -> bool:
        if not p:
            return not k
        if p[0] == "#":
            return any(match(p[1:], k[i:]) for i in range(len(k) + 1))
        return bool(k) and p[0] in ("*", k[0]) and match(p[1:], k[1:])
    return match(pattern.split("."), key.split("."))


def walk(topology: Topology, routes, exchange: str, key: str):
    """(queues waited in with their TTLs, work queues reached) for a publish."""
    steps = topology.steps(routes)
    ttl = {s.name: s.arguments for s in steps if isinstance(s, QueueStep)}
    waited, reached = [], []
    pending = [exchange]
    while pending:
        source = pending.pop()
        for step in steps:
            if isinstance(step, ExchangeBindStep) and step.source == source \
                    and _topic_match(step.routing_key, key):
                pending.append(step.destination)
            elif isinstance(step, BindStep) and step.exchange == source \
                    and _topic_match(step.routing_key, key):
                args = ttl[step.queue]
                if "x-message-ttl" in args and ".delay." in step.queue:
                    waited.append((step.queue, args["x-message-ttl"]))
                    pending.append(args["x-dead-letter-exchange"])
                else:
                    reached.append(step.queue)
    return waited, reached


@pytest.mark.parametrize("seconds", [0.1, 0.3, 1, 1.2, 3.6, 7.9, 10, 59.5, 3600, 86_400 * 30,
                                     MAX_DELAY_SECONDS])
@pytest.mark.parametrize("route", ["celery", "priority.high"])
def test_a_delayed_message_waits_its_delay_rounded_up_then_reaches_its_route(seconds, route):
    topology = Topology("p")
    routes = ["celery", "priority.high", "high", "priority"]
    exchange, key = topology.target(route, wire_due_in_from_now(seconds))
    waited, reached = walk(topology, routes, exchange, key)
    assert reached == [f"p.{route}"]
    total = sum(ms for _, ms in waited) / 1000
    assert seconds <= total < seconds + DELAY_TICK + 0.01  # never early, rounding < 1 tick
    assert len(waited) == sum(d != 0 for d in ladder.digits(round(total / DELAY_TICK)))


def wire_due_in_from_now(seconds: float):
    eta = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    return TaskMessage(task="t", id="i", eta=eta).encode()


def test_a_due_message_goes_straight_to_its_route():
    topology = Topology("p")
    assert topology.target("celery", wire_due_in_from_now(-1)) == ("p.celery", "celery")
    assert topology.target("celery", TaskMessage(task="t", id="i").encode()) == \
        ("p.celery", "celery")


def test_the_topic_matcher_used_here_agrees_with_rabbitmq_semantics():
    assert _topic_match("*.1.#", "r.1")
    assert _topic_match("*.1.#", "r.1.0.3")
    assert not _topic_match("*.1.#", "r.0.1")
    assert _topic_match("r.#", "r.1.2")
    assert not _topic_match("r.#", "r%2Ehigh.1")
    assert not _topic_match("*.*.0.#", "r.1")


@pytest.mark.parametrize(("settings", "ladder_type"), [
    ({}, "classic"), ({"task_queue_type": "quorum"}, "quorum"),
    ({"delay_queue_type": "quorum"}, "quorum"),
    ({"task_queue_type": "quorum", "delay_queue_type": "classic"}, "classic")])
def test_the_ladder_follows_delay_queue_type_then_task_queue_type(settings, ladder_type):
    conf = Settings()
    conf.update(settings)
    assert topology_for(conf).ladder_type == ladder_type
