"""``hutch queues migrate ROUTE --to quorum`` on the real RabbitMQ (issue #17): refused
while messages remain (and when the settings say another type), then with --force the
route's work and dead-letter queues become quorum queues holding the same messages,
no holding queue left behind; a second run has nothing to do. ``hutch queues policy``
prints the leader-placement policy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hutch.brokers.amqp.broker import AmqpBroker
from hutch.config import Settings
from hutch.messages import Wire
from support.processes import TESTS_DIR
from support.waiting import eventually

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres]


def hutch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hutch", "-A", "apps.env_app", *args],
                          env=env, capture_output=True, text=True, timeout=120, cwd=TESTS_DIR)


def wire(message_id: str) -> Wire:
    return Wire(body=b"{}", content_type="application/json", content_encoding="utf-8",
                headers={"id": message_id}, message_id=message_id)


def queues(prefix: str) -> dict[str, tuple[str, int]]:
    out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name", "type", "messages",
                          "--no-table-headers"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    # a queue another run is declaring this moment may list no count yet: only ours count,
    # and one of ours without its count is left out until the next look
    rows = (line.split() for line in out.splitlines())
    return {row[0]: (row[1], int(row[2])) for row in rows
            if len(row) == 3 and row[0].startswith(prefix + ".mig")}


def test_a_classic_route_with_messages_moves_to_quorum(amqp_url, topology_prefix, env):
    conf = Settings()
    conf.update(broker_url=amqp_url, topology_prefix=topology_prefix)
    classic = AmqpBroker(amqp_url, conf)
    try:
        classic.publish([("mig", wire(f"m{i}")) for i in range(5)])
        for i in range(2):
            classic.publish_dead("mig", wire(f"d{i}"))
    finally:
        classic.close()
    quorum_env = {**env, "HUTCH_TASK_QUEUES": json.dumps({"mig": {"queue_type": "quorum"}})}

    refused = hutch("queues", "migrate", "mig", "--to", "quorum", env=quorum_env)
    assert refused.returncode == 2, refused.stderr
    assert "holds 5 message(s) and 2 dead letter(s), with 0 consumer(s)" in refused.stderr
    assert "Traceback" not in refused.stderr
    wrong = hutch("queues", "migrate", "mig", "--to", "classic", env=quorum_env)
    assert wrong.returncode == 2 and "give queue 'mig' the type 'quorum'" in wrong.stderr
    assert queues(topology_prefix)[f"{topology_prefix}.mig"] == ("classic", 5)

    moved = hutch("queues", "migrate", "mig", "--to", "quorum", "--force", env=quorum_env)
    assert moved.returncode == 0, moved.stderr
    assert moved.stdout.strip() == ("mig: now quorum; moved 5 message(s) and 2 dead letter(s) "
                                    "back in, cancelled 0 consumer(s)")
    moved_in = {f"{topology_prefix}.mig": ("quorum", 5),
                f"{topology_prefix}.mig.dead": ("quorum", 2)}
    assert eventually(lambda: queues(topology_prefix) == moved_in, 15), \
        queues(topology_prefix)  # (quorum queues report their counts every few seconds)
    again = hutch("queues", "migrate", "mig", "--to", "quorum", env=quorum_env)
    assert again.returncode == 0 and again.stdout.strip() == "mig: already quorum; nothing to do"

    policy = hutch("queues", "policy", env=env)
    assert policy.stdout.strip() == (
        f"rabbitmqctl set_policy --apply-to queues --priority 0 {topology_prefix}-leaders "
        f"'^{topology_prefix.replace('.', chr(92) + '.')}\\.' "
        "'{\"queue-leader-locator\": \"balanced\"}'")
