"""A client process that waits on a task of its own, then stays subscribed doing nothing:
what ``hutch bench`` runs beside its delay() loop to measure what other clients' tasks
cost a listening client (its completion notices, docs/topology.md).

Protocol on stdin/stdout: it prints ``ready`` once its first ``get()`` returned, and on
a line ``report`` prints the CPU seconds it used since then and exits. Settings come
from HUTCH_* variables, as a worker's do."""

from __future__ import annotations

import sys
import time

from ..client.sync import Client
from ..config import Settings


def main() -> None:
    with Client(conf=Settings.build()) as client:
        client.submit("bench.noop", 0, queue="bench").get(timeout=60)  # subscribes
        started = time.process_time()
        print("ready", flush=True)
        sys.stdin.readline()
        print(f"{time.process_time() - started:.6f}", flush=True)


if __name__ == "__main__":
    main()
