"""StateChange.merge and the batch folding built on it (no database)."""

from __future__ import annotations

import datetime as dt

import pytest

from hutch.results.records import (
    FAILURE,
    PENDING,
    RECEIVED,
    RETRY,
    REVOKED,
    STARTED,
    SUCCESS,
    StateChange,
)
from hutch.results.store import merge_batch, supersedes

UTC = dt.timezone.utc


def test_merge_takes_later_non_none_values() -> None:
    first = StateChange("t", RECEIVED, name="tasks.add", queue="q")
    merged = first.merge(StateChange("t", STARTED, worker="w1"))

    assert merged is first
    assert (merged.state, merged.name, merged.queue, merged.worker) == (STARTED, "tasks.add", "q", "w1")


def test_merge_keeps_values_the_later_change_leaves_none() -> None:
    merged = StateChange("t", RETRY, exception_type="builtins.OSError").merge(
        StateChange("t", RECEIVED, retries=1))
    assert (merged.state, merged.retries, merged.exception_type) == (RECEIVED, 1, "builtins.OSError")


@pytest.mark.parametrize(("state", "retries", "change", "expected"), [
    (PENDING, 9, StateChange("t", RECEIVED), True),
    (PENDING, 0, StateChange("t", PENDING), True),
    (PENDING, 1, StateChange("t", PENDING), False),  # a client's late row after a replace
    (RECEIVED, 0, StateChange("t", STARTED), True),
    (STARTED, 0, StateChange("t", STARTED), False),
    (STARTED, 0, StateChange("t", RECEIVED), False),
    (RETRY, 1, StateChange("t", RECEIVED, retries=2), True),
    (RECEIVED, 2, StateChange("t", RETRY, retries=1), False),
    (SUCCESS, 0, StateChange("t", STARTED, retries=5), False),
    (FAILURE, 0, StateChange("t", SUCCESS), False),
    (REVOKED, 0, StateChange("t", REVOKED), False),
])
def test_supersedes(state: str, retries: int, change: StateChange, expected: bool) -> None:
    assert supersedes(change, state, retries) is expected


T1, T2 = dt.datetime(2024, 3, 1, 12, 0, 1, tzinfo=UTC), dt.datetime(2024, 3, 1, 12, 0, 2, tzinfo=UTC)


@pytest.mark.parametrize(("state", "started_at", "change", "expected"), [
    (STARTED, T1, StateChange("t", STARTED, started_at=T2), True),  # a later run of it
    (STARTED, None, StateChange("t", STARTED, started_at=T1), True),
    (STARTED, T2, StateChange("t", STARTED, started_at=T1), False),  # a late, older one
    (STARTED, T1, StateChange("t", STARTED, started_at=T1), False),
    (STARTED, T1, StateChange("t", STARTED, retries=1, started_at=T2), True),
    (STARTED, T1, StateChange("t", RECEIVED, received_at=T2), False),  # claims still see it
    (RECEIVED, T1, StateChange("t", RECEIVED, received_at=T2), False),
    (RETRY, T1, StateChange("t", STARTED, started_at=T2), False),  # that attempt is over
    (SUCCESS, T1, StateChange("t", STARTED, started_at=T2), False),
])
def test_a_later_run_of_a_started_attempt_supersedes(state: str, started_at: dt.datetime | None,
                                                     change: StateChange, expected: bool) -> None:
    assert supersedes(change, state, 0, started_at) is expected


def test_merge_batch_folds_duplicates_in_order_and_sorts_by_id() -> None:
    batch = [StateChange("b", RECEIVED), StateChange("a", RECEIVED, name="x"),
             StateChange("a", STARTED, worker="w"), StateChange("a", SUCCESS, result=1)]
    merged = merge_batch(batch)

    assert [c.task_id for c in merged] == ["a", "b"]
    assert (merged[0].state, merged[0].name, merged[0].worker, merged[0].result) == (SUCCESS, "x", "w", 1)
    assert batch[1].state == RECEIVED  # inputs untouched


def test_merge_batch_drops_changes_that_lose_precedence() -> None:
    (merged,) = merge_batch([StateChange("a", SUCCESS, result=1), StateChange("a", STARTED, worker="w")])
    assert (merged.state, merged.worker) == (SUCCESS, None)


def test_ready_change_replaces_the_outcome() -> None:
    (merged,) = merge_batch([StateChange("a", RETRY, exception_type="E", traceback="tb"),
                             StateChange("a", SUCCESS, retries=1, result=2)])
    assert (merged.result, merged.exception_type, merged.traceback) == (2, None, None)


def test_an_exception_replaces_every_exception_column() -> None:
    (merged,) = merge_batch([
        StateChange("a", RETRY, exception_type="E", exception_message="x", exception_args=["x"],
                    traceback="tb0"),
        StateChange("a", RETRY, retries=1, exception_type="F", exception_message="<obj>",
                    traceback="tb1")])
    assert (merged.exception_type, merged.exception_args, merged.traceback) == ("F", None, "tb1")


def test_force_folds_everything() -> None:
    (merged,) = merge_batch([StateChange("a", SUCCESS, result=1), StateChange("a", PENDING)],
                            force=True)
    assert (merged.state, merged.result) == (PENDING, None)


def test_unknown_state_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown state 'DONE'"):
        merge_batch([StateChange("a", "DONE")])
