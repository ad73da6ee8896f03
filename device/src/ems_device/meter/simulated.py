"""A deterministic stand-in for real hardware: a 230 V / 50 Hz household-like load.

Given a seed and the same sequence of clock readings it produces the same numbers, so tests
and demos are repeatable. Energy integrates active power over real elapsed (monotonic) time,
continuing from the persisted counter, exactly as a real meter's register would.
"""

from __future__ import annotations

import math
import random
import threading

from ems_contract import Phase, PhaseReading
from ems_device.clock import Clock, SystemClock
from ems_device.meter.base import (
    EnergyStore,
    MemoryEnergyStore,
    MeterReading,
    clamp,
    phase_names,
)

NOMINAL_VOLTAGE = 230.0
_BASE_CURRENT = {"A": 9.0, "B": 6.5, "C": 4.5}
_PHASE_OFFSET = {"A": 0.0, "B": 2.1, "C": 4.2}


def daily_shape(hour: float) -> float:
    """Relative load over a day: a night base, a morning bump and a larger evening peak."""
    morning = 0.45 * math.exp(-(((hour - 7.5) / 1.3) ** 2))
    evening = 0.85 * math.exp(-(((hour - 19.0) / 2.2) ** 2))
    midday = 0.15 * math.exp(-(((hour - 12.5) / 2.0) ** 2))
    return 0.25 + morning + midday + evening


class SimulatedMeter:
    def __init__(
        self,
        phases: int = 3,
        seed: int = 0,
        clock: Clock | None = None,
        energy_store: EnergyStore | None = None,
    ) -> None:
        self._phases = phase_names(phases)
        self._clock = clock or SystemClock()
        self._store = energy_store or MemoryEnergyStore()
        self._rng = {p: random.Random(f"{seed}:{p}") for p in self._phases}
        stored = self._store.load()
        start = random.Random(seed)
        self._energy_kwh: dict[Phase, float] = {
            p: stored.get(p, round(start.uniform(500.0, 5000.0), 3)) for p in self._phases
        }
        self._last_monotonic: float | None = None
        self._lock = threading.Lock()

    @property
    def phases(self) -> tuple[Phase, ...]:
        return self._phases

    def read(self) -> MeterReading:
        with self._lock:
            now = self._clock.now()
            mono = self._clock.monotonic()
            elapsed_h = 0.0 if self._last_monotonic is None else (mono - self._last_monotonic)
            elapsed_h = max(0.0, elapsed_h) / 3600.0
            self._last_monotonic = mono
            hour = now.hour + now.minute / 60 + now.second / 3600
            shape = daily_shape(hour)
            reading = {p: self._phase(p, shape, now.timestamp(), elapsed_h) for p in self._phases}
            self._store.save(self._energy_kwh)
            return reading

    def _phase(self, phase: Phase, shape: float, epoch: float, elapsed_h: float) -> PhaseReading:
        rng = self._rng[phase]
        wobble = math.sin(2 * math.pi * epoch / 900.0 + _PHASE_OFFSET[phase])
        voltage = NOMINAL_VOLTAGE * (1 + 0.012 * wobble) + rng.gauss(0.0, 0.4)
        current = max(0.05, _BASE_CURRENT[phase] * shape * (1 + rng.gauss(0.0, 0.04)))
        # Heavier (more resistive) load pulls the power factor up; keep it in 0.90..0.99.
        pf = clamp(0.9 + 0.07 * min(shape, 1.0) + rng.gauss(0.0, 0.006), 0.9, 0.99)
        apparent = voltage * current
        active = apparent * pf
        reactive = math.sqrt(max(0.0, apparent**2 - active**2))
        self._energy_kwh[phase] += active * elapsed_h / 1000.0
        return PhaseReading(
            voltage_rms=round(voltage, 2),
            current_rms=round(current, 3),
            power_watt=round(active, 1),
            power_var=round(reactive, 1),
            power_va=round(apparent, 1),
            power_factor=round(pf, 3),
            voltage_thd=round(clamp(1.4 + 0.6 * shape + rng.gauss(0.0, 0.1), 0.3, 8.0), 2),
            current_thd=round(clamp(14.0 / (1 + shape) + rng.gauss(0.0, 0.4), 1.0, 40.0), 2),
            energy_kwh=round(self._energy_kwh[phase], 6),
        )

    def close(self) -> None:
        with self._lock:
            self._store.save(self._energy_kwh)
