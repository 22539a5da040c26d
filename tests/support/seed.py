"""The seed's workflow examples (shared/MISSION.md), exactly as written, with their values."""

from __future__ import annotations

from hutch import Hutch, chain, chord, group


def check_seed_workflows(app: Hutch) -> None:
    """Run every example against a running worker and check what it returns."""
    add, mul, xsum = app.tasks["tests.add"], app.tasks["tests.mul"], app.tasks["tests.xsum"]
    assert group(add.s(i, i) for i in range(10))().get(timeout=10) == list(range(0, 20, 2))
    assert chain(add.s(2, 2), add.s(4), add.s(8))().get(timeout=10) == 16
    assert (add.s(4, 16) | mul.s(2) | (add.s(4) | mul.s(8)))().get(timeout=10) == 352
    assert chord((add.s(i, i) for i in range(10)), xsum.s())().get(timeout=10) == 90
    assert ~xsum.map([range(10), range(100)]) == [45, 4950]
    assert ~add.starmap(zip(range(10), range(10))) == list(range(0, 20, 2))  # noqa: B905
    parts = add.chunks(zip(range(100), range(100)), 10)().get(timeout=10)  # noqa: B905
    assert parts == [[2 * i for i in range(j, j + 10)] for j in range(0, 100, 10)]
