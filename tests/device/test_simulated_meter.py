"""The simulated meter: plausible, deterministic, and integrating energy over elapsed time."""

from __future__ import annotations

from typing import Any

import pytest

from ems_contract import MEASUREMENTS, Phase
from ems_device.meter.base import MemoryEnergyStore
from ems_device.meter.simulated import SimulatedMeter, daily_shape
from tests.device.fakes import ManualClock


def readings(seed: int, count: int = 5) -> list[dict[Phase, dict[str, Any]]]:
    clock = ManualClock()
    meter = SimulatedMeter(phases=3, seed=seed, clock=clock)
    out = []
    for _ in range(count):
        out.append({p: r.model_dump() for p, r in meter.read().items()})
        clock.advance(1.0)
    return out


def test_same_seed_same_numbers_other_seed_other_numbers() -> None:
    assert readings(7) == readings(7)
    assert readings(7) != readings(8)


def test_values_are_plausible() -> None:
    clock = ManualClock()
    meter = SimulatedMeter(phases=3, seed=1, clock=clock)
    for _ in range(200):
        for reading in meter.read().values():
            fields = reading.model_dump()
            assert set(fields) == set(MEASUREMENTS)
            assert 220 < reading.voltage_rms < 240
            assert 0 < reading.current_rms < 40
            assert 0.9 <= reading.power_factor <= 0.99
            assert reading.power_va == pytest.approx(
                reading.voltage_rms * reading.current_rms, rel=0.01
            )
            assert reading.power_watt == pytest.approx(
                reading.power_va * reading.power_factor, rel=0.01
            )
            assert reading.power_var >= 0
            assert 0 < reading.voltage_thd < 8
            assert 0 < reading.current_thd < 40
        clock.advance(60.0)


def test_daily_shape_peaks_in_the_evening() -> None:
    assert daily_shape(19.0) > daily_shape(7.5) > daily_shape(3.0)


def test_phase_count_is_configurable() -> None:
    assert set(SimulatedMeter(phases=1).read()) == {"A"}
    assert SimulatedMeter(phases=2).phases == ("A", "B")
    with pytest.raises(ValueError):
        SimulatedMeter(phases=4)


def test_energy_integrates_power_over_elapsed_time_and_persists() -> None:
    clock = ManualClock()
    store = MemoryEnergyStore()
    meter = SimulatedMeter(phases=1, seed=3, clock=clock, energy_store=store)
    first = meter.read()["A"]
    clock.advance(3600.0)
    second = meter.read()["A"]
    # Energy over the hour is the power at its end times one hour (rectangle rule).
    assert second.energy_kwh - first.energy_kwh == pytest.approx(second.power_watt / 1000, rel=1e-3)
    assert store.saved["A"] == pytest.approx(second.energy_kwh, abs=1e-6)
    # A restarted meter continues the counter instead of starting over.
    again = SimulatedMeter(phases=1, seed=3, clock=clock, energy_store=store)
    assert again.read()["A"].energy_kwh == pytest.approx(second.energy_kwh, abs=1e-6)
