"""The benchmark's app: a no-op task, configured entirely by HUTCH_* variables."""

from hutch import Hutch

app = Hutch("hutchbench")


@app.task(name="bench.noop")
def noop(i=0):
    return i


@app.task(name="bench.size")
def size(results):
    """The chord scenario's body: how many header results it got."""
    return len(results)
