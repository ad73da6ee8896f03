"""What the sampler needs from a meter, whatever the hardware behind it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ems_contract import PHASES, Phase, PhaseReading

#: One reading of every phase the meter has; ``energy_kwh`` is cumulative.
MeterReading = dict[Phase, PhaseReading]


class MeterError(RuntimeError):
    """A reading could not be taken; the sampler skips this tick and tries again."""


class Meter(Protocol):
    @property
    def phases(self) -> tuple[Phase, ...]: ...

    def read(self) -> MeterReading:
        """Take one reading of all phases; raise MeterError if the hardware misbehaves."""
        ...

    def close(self) -> None: ...


class EnergyStore(Protocol):
    """Where a meter keeps its cumulative energy per phase across restarts."""

    def load(self) -> dict[str, float]: ...

    def save(self, energy_kwh: Mapping[Phase, float]) -> None: ...


class MemoryEnergyStore:
    def __init__(self, initial: Mapping[str, float] | None = None) -> None:
        self.saved: dict[str, float] = dict(initial or {})

    def load(self) -> dict[str, float]:
        return dict(self.saved)

    def save(self, energy_kwh: Mapping[Phase, float]) -> None:
        self.saved = {str(phase): kwh for phase, kwh in energy_kwh.items()}


def phase_names(count: int) -> tuple[Phase, ...]:
    if not 1 <= count <= len(PHASES):
        raise ValueError(f"a meter has 1 to 3 phases, not {count}")
    return PHASES[:count]


def clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))
