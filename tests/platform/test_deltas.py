"""Reset-aware energy deltas (pure logic)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ems_platform.ingest.deltas import DeltaTracker, Previous
from tests.platform.payloads import BASE_TS


def at(seconds: int):  # type: ignore[no-untyped-def]
    return BASE_TS + timedelta(seconds=seconds)


def test_first_reading_then_deltas() -> None:
    tracker = DeltaTracker()
    first = tracker.observe("d1", "A", at(0), 10.0, "b", 0)
    assert first.energy_delta_kwh is None
    assert first.flags == ("first_reading",)
    second = tracker.observe("d1", "A", at(1), 10.25, "b", 1)
    assert second.energy_delta_kwh == pytest.approx(0.25)
    assert second.flags == ()


def test_phases_and_devices_are_independent() -> None:
    tracker = DeltaTracker()
    tracker.observe("d1", "A", at(0), 10.0, "b", 0)
    assert tracker.observe("d1", "B", at(1), 50.0, "b", 1).flags == ("first_reading",)
    assert tracker.observe("d2", "A", at(1), 50.0, "b", 1).flags == ("first_reading",)


def test_counter_decrease_is_a_reset_with_null_delta() -> None:
    tracker = DeltaTracker()
    tracker.observe("d1", "A", at(0), 10.0, "b", 0)
    reset = tracker.observe("d1", "A", at(1), 0.5, "b2", 0)
    assert reset.energy_delta_kwh is None
    assert reset.flags == ("counter_reset",)
    after = tracker.observe("d1", "A", at(2), 0.75, "b2", 1)
    assert after.energy_delta_kwh == pytest.approx(0.25)


def test_late_sample_is_flagged_and_does_not_move_the_baseline() -> None:
    tracker = DeltaTracker()
    tracker.observe("d1", "A", at(10), 10.0, "b", 10)
    late = tracker.observe("d1", "A", at(5), 9.0, "b", 5)
    assert late.energy_delta_kwh is None
    assert late.flags == ("out_of_order",)
    assert tracker.observe("d1", "A", at(11), 10.5, "b", 11).energy_delta_kwh == pytest.approx(0.5)


def test_redelivery_has_no_delta_and_no_flag() -> None:
    tracker = DeltaTracker()
    tracker.observe("d1", "A", at(0), 10.0, "b", 0)
    tracker.observe("d1", "A", at(1), 11.0, "b", 1)
    again = tracker.observe("d1", "A", at(1), 11.0, "b", 1)
    assert again.energy_delta_kwh is None
    assert again.flags == ()


def test_seeded_device_continues_from_the_database() -> None:
    tracker = DeltaTracker()
    assert not tracker.is_seeded("d1")
    tracker.seed("d1", {"A": Previous(at(0), 10.0, "b", 0)})
    assert tracker.is_seeded("d1")
    delta = tracker.observe("d1", "A", at(1), 10.5, "b", 1)
    assert delta.energy_delta_kwh == pytest.approx(0.5)
    assert tracker.observe("d1", "B", at(1), 3.0, "b", 1).flags == ("first_reading",)


def test_forget_drops_state() -> None:
    tracker = DeltaTracker()
    tracker.seed("d1", {"A": Previous(at(0), 10.0, "b", 0)})
    tracker.forget("d1")
    assert not tracker.is_seeded("d1")
    assert tracker.observe("d1", "A", at(1), 10.5, "b", 1).flags == ("first_reading",)
