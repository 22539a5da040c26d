"""The benchmark's app: a no-op task, configured entirely by HUTCH_* variables."""

from typing import Any

from hutch import Hutch

app = Hutch("hutchbench")


@app.task(name="bench.noop")
def noop(i: int = 0) -> int:
    return i


@app.task(name="bench.size")
def size(results: list[Any]) -> int:
    """The chord scenario's body: how many header results it got."""
    return len(results)
