"""Queue features from settings: validation, the arguments they declare, priorities."""

import uuid
from pathlib import Path

import pytest

from apps.tasks import make_app
from hutch import Hutch
from hutch.brokers.amqp.mismatch import queue_mismatch, queue_refusal
from hutch.brokers.amqp.topology import SHARED, Topology, queues_in, without
from hutch.brokers.routes import DEFAULT_DELIVERY_LIMIT, route_options, topology_for
from hutch.call_options import build_message
from hutch.config import Settings
from hutch.errors import (
    BrokerUnavailable,
    ConfigurationError,
    QueueMismatchError,
    QueueNodeDown,
)
from support.workers import running_worker


@pytest.mark.parametrize("value, match", [
    (["reports"], "expected a mapping of route name"),
    ({"reports": 9}, r"task_queues\['reports'\]: expected a mapping"),
    ({"reports": {"max_prio": 9}}, r"task_queues\['reports'\]: unknown key\(s\) max_prio"),
    ({"reports": {"max_priority": 0}}, r"\['max_priority'\]: expected a whole number 1..255"),
    ({"reports": {"max_priority": "9"}}, r"\['max_priority'\]: expected a whole number"),
    ({"reports": {"max_priority": True}}, r"\['max_priority'\]: expected a whole number"),
    ({"reports": {"queue_type": "stream"}}, r"\['queue_type'\]: 'stream' is not one of"),
    ({"reports": {"delivery_limit": 0}}, r"\['delivery_limit'\]: expected a whole number >= 1"),
    ({"": {}}, "route names must be non-empty strings"),
])
def test_bad_task_queues_are_refused_naming_the_field(value, match):
    with pytest.raises(ConfigurationError, match=match):
        Settings().task_queues = value


@pytest.mark.parametrize("name, value", [
    ("task_queue_type", "lazy"), ("task_queue_max_priority", 256),
    ("task_default_priority", -1), ("worker_max_lost_attempts", 0),
])
def test_bad_queue_defaults_are_refused(name, value):
    with pytest.raises(ConfigurationError, match=name):
        setattr(Settings(), name, value)


def test_task_queues_from_the_environment_is_json(monkeypatch):
    monkeypatch.setenv("HUTCH_TASK_QUEUES", '{"prio": {"max_priority": 9}}')
    monkeypatch.setenv("HUTCH_MAX_LOST_ATTEMPTS", "5")
    app = Hutch("t", broker="memory://")
    assert app.conf.task_queues == {"prio": {"max_priority": 9}}
    assert app.conf.worker_max_lost_attempts == 5
    monkeypatch.setenv("HUTCH_TASK_QUEUES", "{prio: 9}")
    with pytest.raises(ConfigurationError, match="task_queues: expected a JSON object"):
        Hutch("t", broker="memory://")


def test_arguments_of_classic_priority_and_quorum_routes():
    conf = Settings()
    conf.task_queues = {"prio": {"max_priority": 9}, "qq": {"queue_type": "quorum"},
                        "qq5": {"queue_type": "quorum", "delivery_limit": 5}}
    topology = topology_for(conf)
    assert topology.work_queue_arguments("plain") == {
        "x-dead-letter-exchange": "hutch.plain.dlx", "x-dead-letter-routing-key": "plain"}
    assert topology.work_queue_arguments("prio")["x-max-priority"] == 9
    quorum = topology.work_queue_arguments("qq")
    assert quorum["x-queue-type"] == "quorum"
    assert quorum["x-dead-letter-strategy"] == "at-least-once"
    assert quorum["x-overflow"] == "reject-publish"
    assert quorum["x-delivery-limit"] == DEFAULT_DELIVERY_LIMIT
    assert topology.work_queue_arguments("qq5")["x-delivery-limit"] == 5
    dead_queue = next(s for s in topology.route_steps("qq") if getattr(s, "name", "") ==
                      "hutch.qq.dead")
    assert dead_queue.arguments == {"x-queue-type": "quorum"}


def test_defaults_apply_to_unlisted_routes_and_priority_only_to_classic_ones():
    conf = Settings()
    conf.task_queue_max_priority = 5
    conf.task_queues = {"qq": {"queue_type": "quorum"}, "none": {"max_priority": None}}
    assert route_options(conf, "other").max_priority == 5
    assert route_options(conf, "qq").max_priority is None
    assert route_options(conf, "none").max_priority is None
    conf.task_queue_type = "quorum"
    assert route_options(conf, "other").queue_type == "quorum"
    assert route_options(conf, "other").max_priority is None


@pytest.mark.parametrize("queues, default_type, match", [
    ({"qq": {"queue_type": "quorum", "max_priority": 9}}, "classic",
     r"task_queues\['qq'\]: max_priority needs a classic queue"),
    ({"qq": {"max_priority": 9}}, "quorum",
     r"task_queues\['qq'\]: max_priority needs a classic queue"),
    ({"c": {"delivery_limit": 3}}, "classic",
     r"task_queues\['c'\]: delivery_limit needs queue_type 'quorum'"),
])
def test_combinations_rabbitmq_cannot_do_are_refused(queues, default_type, match):
    conf = Settings()
    conf.task_queue_type = default_type
    conf.task_queues = queues
    with pytest.raises(ConfigurationError, match=match):
        topology_for(conf)


@pytest.fixture
def app(tmp_path):
    app = make_app(f"memory://{uuid.uuid4().hex}", f"sqlite:///{tmp_path / 'r.sqlite'}",
                   task_queues={"prio": {"max_priority": 9}}, worker_prefetch_multiplier=1)
    yield app
    app.close()


@pytest.mark.parametrize("options, match", [
    ({"queue": "prio", "priority": 10}, "priority: 10 is above 9, the maximum priority of "
                                        "queue 'prio'"),
    ({"queue": "prio", "priority": -1}, "priority: expected a whole number 0..9"),
    ({"queue": "prio", "priority": "high"}, "priority: expected a whole number 0..9"),
    ({"priority": 3}, "queue 'celery' has no maximum priority"),
])
def test_a_priority_the_route_cannot_honour_is_refused(app, options, match):
    with pytest.raises(ConfigurationError, match=match):
        app.tasks["tests.add"].apply_async((1, 1), **options)


def test_default_priority_applies_only_where_the_route_has_priorities(app):
    app.conf.task_default_priority = 4

    def priority(**options):
        return build_message("tests.add", (1, 1), {}, options, app.conf).encode().priority

    assert priority(queue="prio") == 4
    assert priority(queue="prio", priority=7) == 7
    assert priority() is None
    app.conf.task_default_priority = 12
    assert priority(queue="prio") == 9


def test_memory_broker_runs_the_highest_priority_first(app, tmp_path):
    order = tmp_path / "order.txt"
    add = app.tasks["tests.append"]
    results = [add.apply_async((str(order), f"p{p}"), queue="prio", priority=p)
               for p in (1, 5, 0, 9, 5, 3)] + [add.apply_async((str(order), "none"), queue="prio")]
    with running_worker(app, queues=["prio"], pool="solo"):
        for r in results:
            r.get(timeout=10)
    assert Path(order).read_text().split() == ["p9", "p5", "p5", "p3", "p1", "p0", "none"]


def test_a_406_for_other_queue_arguments_says_how_to_migrate():
    text = ("PRECONDITION_FAILED - inequivalent arg 'x-max-priority' for queue 'hutch.celery' "
            "in vhost '/': received the value '9' of type 'signedint' but current is none")
    error = queue_mismatch(text)
    assert isinstance(error, QueueMismatchError)
    message = str(error)
    assert "queue 'hutch.celery' already exists with x-max-priority = none" in message
    assert "declare it with 9" in message
    assert "rabbitmqctl delete_queue hutch.celery" in message
    assert "received none but current is the value '9'" not in message
    assert "with x-max-priority = 9" in str(queue_mismatch(
        "inequivalent arg 'x-max-priority' for queue 'q' in vhost '/': received none but "
        "current is the value '9' of type 'signedint'"))
    assert queue_mismatch("NOT_FOUND - no queue 'q' in vhost '/'") is None


def test_a_classic_queue_the_settings_want_quorum_points_to_queues_migrate():
    text = ("PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue "
            "'hutch.prod.payments.dead' in vhost '/': received the value 'quorum' of type "
            "'longstr' but current is none")  # RabbitMQ 3.10: a classic queue has no type
    message = str(queue_mismatch(text, prefix="hutch.prod"))
    assert "already exists with x-queue-type = classic" in message
    assert "declare it with quorum" in message
    assert "`hutch queues migrate payments --to quorum`" in message
    assert "ROUTE --to quorum" in str(queue_mismatch(text))  # prefix not known


def test_a_404_for_a_queue_whose_node_is_down_names_both():
    text = ("NOT_FOUND - home node 'rabbit@h2' of durable queue 'hutch.work' in vhost '/' "
            "is down or inaccessible")
    error = queue_refusal(text)
    assert isinstance(error, QueueNodeDown) and isinstance(error, BrokerUnavailable)
    assert (error.queue, error.node) == ("hutch.work", "rabbit@h2")
    assert "'hutch.work'" in str(error) and "'rabbit@h2'" in str(error)
    assert queue_refusal("NOT_FOUND - no queue 'q' in vhost '/'") is None


def test_a_ladder_queue_whose_node_is_down_is_left_out_with_its_binding():
    topology = Topology("p")
    steps = topology.shared_steps()
    gone = topology.delay_queue(0, 1)
    left = without(steps, [gone])
    assert len(left) == len(steps) - 2
    assert not any(getattr(s, "name", None) == gone or getattr(s, "queue", None) == gone
                   for s in left)
    assert topology.steps_for(SHARED, [gone]) == left
    assert queues_in(left) == [q for q in queues_in(steps) if q != gone]
