"""Chord counting as the recorder does it: the count's transaction, then the claim's."""

from __future__ import annotations

from collections.abc import Sequence

from hutch.results.groups import Done
from hutch.results.records import StateChange
from hutch.results.store import ResultStore
from hutch.worker.chords import ChordKeeper, Outcome
from hutch.workflows.plan import GroupRow


def commit(keeper: ChordKeeper, store: ResultStore, changes: Sequence[StateChange],
           groups: Sequence[GroupRow], events: Sequence[Done]) -> Outcome:
    """:meth:`ChordKeeper.count`, then :meth:`ChordKeeper.claim` (the Recorder runs
    each under its own retry)."""
    counted = keeper.count(store, changes, groups, events)
    return counted.plus(keeper.claim(store, events, counted))
