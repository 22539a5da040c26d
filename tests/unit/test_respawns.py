"""When the prefork supervisor replaces a child (worker/respawns.py): children that die
young are replaced later and later, never in a storm."""

from __future__ import annotations

from hutch.worker.respawns import FIRST_PAUSE, MAX_PAUSE, STEADY, Respawns


def test_children_that_die_young_are_replaced_after_a_doubling_pause_up_to_a_cap():
    respawns = Respawns()
    pauses = [respawns.exited(0, lived=0.5, now=100.0) for _ in range(8)]
    assert pauses == [1.0, 2.0, 4.0, 8.0, 16.0, MAX_PAUSE, MAX_PAUSE, MAX_PAUSE]
    assert pauses[0] == FIRST_PAUSE


def test_a_child_that_ran_steadily_starts_its_slot_over():
    respawns = Respawns()
    for _ in range(4):
        respawns.exited(0, lived=0.5, now=0.0)
    assert respawns.exited(0, lived=STEADY, now=0.0) == FIRST_PAUSE
    assert respawns.exited(0, lived=0.5, now=0.0) == 2 * FIRST_PAUSE


def test_a_child_the_supervisor_killed_is_replaced_after_the_first_pause():
    respawns = Respawns()
    for _ in range(4):
        respawns.exited(0, lived=0.5, now=0.0)
    assert respawns.exited(0, lived=0.5, now=0.0, expected=True) == FIRST_PAUSE


def test_slots_back_off_independently_and_are_due_once():
    respawns = Respawns()
    respawns.exited(0, lived=0.5, now=10.0)
    respawns.exited(0, lived=0.5, now=10.0)  # slot 0: 2 s
    respawns.exited("sidecar", lived=0.5, now=10.0)  # 1 s
    assert respawns.pending
    assert respawns.due(10.5) == []
    assert respawns.due(11.0) == ["sidecar"]
    assert respawns.due(12.0) == [0]
    assert respawns.due(60.0) == [] and not respawns.pending


def test_a_retired_child_is_replaced_at_once_and_starts_its_slot_over():
    respawns = Respawns()
    for _ in range(4):
        respawns.exited(0, lived=0.5, now=0.0)
    respawns.retired(0, now=50.0)
    assert respawns.due(50.0) == [0]
    assert respawns.exited(0, lived=0.5, now=60.0) == FIRST_PAUSE
