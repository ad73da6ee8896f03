"""The quality rules of one reading against its predecessor (pure logic)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ems_platform.ingest.deltas import Point, QualityRules, derive, own_flags
from tests.platform.payloads import BASE_TS

RULES = QualityRules(max_kw=100, clock_skew_s=300)


def point(seconds: int, energy: float, seq: int, boot: str = "b") -> Point:
    return Point(BASE_TS + timedelta(seconds=seconds), energy, boot, seq)


def test_first_reading_has_no_delta() -> None:
    first = derive(None, point(0, 10.0, 0), RULES)
    assert first.energy_delta_kwh is None and first.flags == ("first_reading",)


def test_delta_gap_reset_and_jump_combine() -> None:
    previous = point(0, 10.0, 0)
    assert derive(previous, point(60, 10.5, 1), RULES).energy_delta_kwh == pytest.approx(0.5)
    reset = derive(previous, point(60, 1.0, 3), RULES)
    assert reset.energy_delta_kwh is None and reset.flags == ("counter_reset", "gap")
    jump = derive(previous, point(36, 11.1, 1), RULES)
    assert jump.flags == ("suspicious_jump",) and jump.energy_delta_kwh == pytest.approx(1.1)
    assert derive(previous, point(60, 10.5, 9, boot="other"), RULES).flags == ()


def test_own_flags() -> None:
    received = BASE_TS
    assert own_flags(BASE_TS + timedelta(seconds=300), received, late=False, rules=RULES) == set()
    assert own_flags(BASE_TS + timedelta(seconds=301), received, late=True, rules=RULES) == {
        "future_timestamp",
        "out_of_order",
    }
