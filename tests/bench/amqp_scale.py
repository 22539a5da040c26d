"""What one route and many connections cost RabbitMQ, for docs/scaling.md.

Run: ``.venv/bin/python tests/bench/amqp_scale.py [--count N] [--rounds R]
[--connections 100,300] [--cluster]``. Run by hand (not by pytest); it prints
figures and asserts nothing.

On the shared RabbitMQ (one node) it works in a vhost of its own,
``hutchscale_<random>`` (``rabbitmqctl add_vhost`` and ``set_permissions`` for guest),
deleted at the end, on Ctrl-C or failure too:

- one route, classic against quorum, ``--rounds`` times in alternation: ``--count``
  persistent messages published through hutch's own publisher (AmqpBroker, batches
  of 100 under publisher confirms, ``--publishers`` processes at once), then
  consumed through hutch's consumer (prefetch 200, each message acked);
- the connections of a real worker: ``hutch worker -P prefork -c 2`` and ``-P threads
  -c 4`` started in the vhost, then ``rabbitmqctl list_connections`` and
  ``list_channels`` counted;
- N idle connections (pika, one channel each, as an idle consumer holds): the
  growth of the node's ``connection_*`` memory (``rabbitmqctl status``) per connection.
  The shared node allows about 830 sockets (its file descriptor limit): keep N well
  under it, other work needs connections too.

``--cluster`` also times the quorum route on a private 3-node cluster
(tests/support/servers.py PrivateCluster: about 20 s to start, CPU-heavy), where each
message is replicated to two followers before it is confirmed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pika

from hutch.brokers.amqp.broker import AmqpBroker
from hutch.config import Settings
from hutch.messages import Wire

HOST = "amqp://guest:guest@127.0.0.1:5672"
BODY = json.dumps({"args": [1, "order-123456", {"customer": "c42", "amount": 17}],
                   "kwargs": {"retry": False}, "link": [], "link_error": [],
                   "chord": None}).encode()
"""About the size of a small task's body (hutch's JSON envelope)."""
BATCH = 100
ROOT = Path(__file__).parents[2]


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {os.getloadavg()[0]:.2f}] {message}", flush=True)


def ctl(*args: str) -> str:
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                          text=True, timeout=120).stdout


@contextmanager
def own_vhost() -> Iterator[str]:
    """A vhost of this run (guest may use it), deleted at the end."""
    vhost = f"hutchscale_{uuid.uuid4().hex[:8]}"
    ctl("add_vhost", vhost)
    try:
        ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        yield vhost
    finally:
        ctl("delete_vhost", vhost)


def wire(i: int) -> Wire:
    return Wire(body=BODY, content_type="application/json", content_encoding="utf-8",
                headers={"hutch": 1, "task": "bench.add", "id": str(i), "retries": 0},
                message_id=str(i))


def settings_for(prefix: str, queue_type: str) -> Settings:
    settings = Settings()
    settings.topology_prefix = prefix
    settings.task_queue_type = queue_type
    return settings


def publish_part(url: str, prefix: str, queue_type: str, count: int) -> None:
    """One publisher process: ``count`` messages in confirmed batches of BATCH."""
    broker = AmqpBroker(url, settings_for(prefix, queue_type))
    try:
        for start in range(0, count, BATCH):
            broker.publish([("bench", wire(i)) for i in range(start, min(count, start + BATCH))])
    finally:
        broker.close()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_route(url: str, queue_type: str, count: int, publishers: int,
              nodes: dict[str, int]) -> tuple[float, float, dict[str, float]]:
    """(published/s, consumed/s, CPU microseconds per message of each node in ``nodes``
    (name: beam pid) over the publish and the consume) of one route of ``queue_type``."""
    cpu = {name: cpu_seconds(pid) for name, pid in nodes.items()}
    prefix = f"hutchscale.{uuid.uuid4().hex[:6]}"
    broker = AmqpBroker(url, settings_for(prefix, queue_type))
    try:
        broker.declare(["bench"])
        per = count // publishers
        procs = [multiprocessing.Process(target=publish_part,
                                         args=(url, prefix, queue_type, per))
                 for _ in range(publishers)]
        began = time.perf_counter()
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        published = per * publishers / (time.perf_counter() - began)
        total = broker.queue_depths(["bench"])["bench"][0]
        acks: queue.SimpleQueue = queue.SimpleQueue()
        done = threading.Event()

        def acker() -> None:
            for _ in range(total):
                acks.get().ack()
            done.set()

        threading.Thread(target=acker, daemon=True).start()
        handle = broker.consume(["bench"], 200, acks.put)
        began = time.perf_counter()
        handle.start()
        done.wait(300)
        consumed = total / (time.perf_counter() - began)
        used = {name: (cpu_seconds(pid) - cpu[name]) * 1e6 / total for name, pid in nodes.items()}
        handle.stop()
        return published, consumed, used
    finally:
        broker.delete_topology(["bench"], shared=True)
        broker.close()


def routes(url: str, label: str, count: int, rounds: int, publishers: int,
           nodes: dict[str, int]) -> None:
    """Classic and quorum in alternation; ``nodes`` (name: beam pid) have their CPU
    time per message printed (the broker's whole cost: connections, channels, queue)."""
    figures: dict[str, list[tuple[float, float]]] = {"classic": [], "quorum": []}
    for round_ in range(1, rounds + 1):
        for queue_type in figures:
            published, consumed, used = one_route(url, queue_type, count, publishers, nodes)
            figures[queue_type].append((published, consumed))
            say(f"{label} round {round_} {queue_type}: {count:,} msgs published "
                f"{published:,.0f}/s ({publishers} publisher processes), consumed "
                f"{consumed:,.0f}/s; broker CPU per message (publish+deliver+ack): "
                + ", ".join(f"{name} {us:.0f} us" for name, us in used.items()))
    for queue_type, runs in figures.items():
        pub = [r[0] for r in runs]
        con = [r[1] for r in runs]
        say(f"{label} {queue_type}: publish median {statistics.median(pub):,.0f}/s "
            f"({min(pub):,.0f}-{max(pub):,.0f}), consume median {statistics.median(con):,.0f}/s "
            f"({min(con):,.0f}-{max(con):,.0f}), {len(runs)} runs")


def worker_connections(url: str, vhost: str) -> None:
    """Start real workers in the vhost and count their connections (by the role and
    process in each connection's name, hutch.brokers.amqp.params.connection_name)."""
    for pool, concurrency in (("prefork", 2), ("threads", 4)):
        prefix = f"hutchscale.{uuid.uuid4().hex[:6]}"
        with tempfile.TemporaryDirectory() as tmp:
            env = {k: v for k, v in os.environ.items() if not k.startswith("HUTCH_")}
            env.update(HUTCH_BROKER_URL=url, HUTCH_BACKEND_URL=f"sqlite:///{tmp}/r.db",
                       HUTCH_TOPOLOGY_PREFIX=prefix, HUTCH_LOG_LEVEL="WARNING")
            worker = subprocess.Popen(
                [sys.executable, "-m", "hutch", "-A", "hutch.benchmarks.tasks", "worker",
                 "-Q", "bench", "-P", pool, "-c", str(concurrency)], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(25)  # started, consuming, its startup's admin connections closed
                for _ in range(2):
                    names = connection_names(vhost)
                    channels = channels_in(vhost)
                    roles: dict[str, int] = {}
                    for name in names:
                        role = " ".join(name.split()[1:-1])
                        roles[role] = roles.get(role, 0) + 1
                    processes = len({name.rsplit(":", 1)[-1] for name in names})
                    say(f"worker -P {pool} -c {concurrency}: {len(names)} connections from "
                        f"{processes} processes, {channels} channels; by role: "
                        + ", ".join(f"{role} {n}" for role, n in sorted(roles.items())))
                    time.sleep(5)
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(60)
            cleanup = AmqpBroker(url, settings_for(prefix, "classic"))
            cleanup.delete_topology(["bench"], shared=True)
            cleanup.close()


def channels_in(vhost: str) -> int:
    rows = json.loads(ctl("list_channels", "vhost", "--formatter", "json") or "[]")
    return sum(1 for row in rows if row["vhost"] == vhost)


def connection_names(vhost: str) -> list[str]:
    """The ``connection_name`` client property of every connection in ``vhost``."""
    rows = json.loads(ctl("list_connections", "vhost", "client_properties",
                          "--formatter", "json") or "[]")
    names = []
    for row in (r for r in rows if r["vhost"] == vhost):  # the command lists every vhost's
        found = [value for key, _, value in row["client_properties"] if key == "connection_name"]
        names.append(found[0] if found else "? unnamed ?")
    return names


def connection_memory() -> dict[str, int]:
    status = json.loads(ctl("status", "--formatter", "json"))
    memory = status["memory"]
    out = {k: int(v) for k, v in memory.items() if isinstance(v, int)}
    out["erlang_total"] = int(memory["total"]["erlang"])
    out["rss"] = int(memory["total"]["rss"])
    out["sockets_used"] = int(status["file_descriptors"]["sockets_used"])
    out["sockets_limit"] = int(status["file_descriptors"]["sockets_limit"])
    return out


def idle_connections(vhost: str, counts: list[int]) -> None:
    """Memory of N idle connections with one channel each (pika, heartbeat 60 s)."""
    params = pika.ConnectionParameters("127.0.0.1", 5672, vhost,
                                       pika.PlainCredentials("guest", "guest"), heartbeat=60)
    for count in counts:
        before = connection_memory()
        opened = []
        try:
            for _ in range(count):
                conn = pika.BlockingConnection(params)
                conn.channel()
                opened.append(conn)
            time.sleep(3)
            after = connection_memory()
        finally:
            for conn in opened:
                conn.close()
        grown = sum(after[k] - before[k] for k in after if k.startswith("connection_"))
        say(f"{count} idle connections: connection memory +{grown / 2**20:.1f} MiB "
            f"({grown / count / 1024:.0f} KiB each), erlang total "
            f"+{(after['erlang_total'] - before['erlang_total']) / 2**20:.1f} MiB, "
            f"sockets used {before['sockets_used']} -> {after['sockets_used']} of "
            f"{after['sockets_limit']}; by kind (KiB each): " + ", ".join(
                f"{k[11:]} {(after[k] - before[k]) / count / 1024:.0f}"
                for k in after if k.startswith("connection_")))
        moved = sorted(((after[k] - before[k], k) for k in after
                        if k not in ("sockets_used", "sockets_limit")), reverse=True)
        print("    largest changes (MiB): " + ", ".join(
            f"{k} {d / 2**20:+.1f}" for d, k in moved[:6]))
        time.sleep(2)


def on_cluster(count: int, rounds: int, publishers: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))  # as pytest's rootdir conftest does
    from support.servers import PrivateCluster

    began = time.perf_counter()
    cluster = PrivateCluster()
    try:
        cluster.start()
        say(f"private 3-node cluster up in {time.perf_counter() - began:.0f} s")
        nodes = {f"node{i}{' (leader)' if i == 0 else ''}": node.beam_pid or 0
                 for i, node in enumerate(cluster.nodes)}
        routes(cluster.urls[0], "3-node cluster", count, rounds, publishers, nodes)
    finally:
        cluster.remove()


def interrupted(*_: object) -> None:
    """SIGTERM ends the run as Ctrl-C does: the vhost is deleted."""
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--connections", default="100,300")
    parser.add_argument("--cluster", action="store_true")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["routes", "workers", "connections"])
    options = parser.parse_args()
    signal.signal(signal.SIGTERM, interrupted)
    say(f"{os.cpu_count()} cores, loadavg {open('/proc/loadavg').read().strip()}, "
        f"RabbitMQ {json.loads(ctl('status', '--formatter', 'json'))['rabbitmq_version']}")
    with own_vhost() as vhost:
        url = f"{HOST}/{vhost}"
        if "routes" not in options.skip:
            shared = {"shared node (others' traffic too)":
                      int(ctl("eval", "os:getpid().").strip().strip('"'))}
            routes(url, "single node", options.count, options.rounds, options.publishers, shared)
        if "workers" not in options.skip:
            worker_connections(url, vhost)
        if "connections" not in options.skip:
            idle_connections(vhost, [int(n) for n in options.connections.split(",")])
    if options.cluster:
        on_cluster(options.count, options.rounds, options.publishers)


if __name__ == "__main__":
    main()
