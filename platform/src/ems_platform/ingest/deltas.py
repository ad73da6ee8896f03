"""Reset-aware energy deltas: each reading against the previous one of its device and phase."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ems_platform.ingest.envelope import Flag


@dataclass(frozen=True, slots=True)
class Previous:
    """The newest stored (or about to be stored) reading of one device and phase."""

    ts: datetime
    energy_kwh: float
    boot: str
    seq: int


@dataclass(frozen=True, slots=True)
class Delta:
    energy_delta_kwh: float | None
    flags: tuple[str, ...]


class DeltaTracker:
    """Keeps the newest reading per (device, phase) in memory.

    Each device is seeded from the database the first time it is seen (see ``seed``), so a
    restart does not flag every device's next sample as a first reading.
    """

    def __init__(self) -> None:
        self._previous: dict[tuple[str, str], Previous] = {}
        self._seeded: set[str] = set()

    def is_seeded(self, device_id: str) -> bool:
        return device_id in self._seeded

    def seed(self, device_id: str, latest: Mapping[str, Previous]) -> None:
        for phase, previous in latest.items():
            current = self._previous.get((device_id, phase))
            if current is None or previous.ts > current.ts:
                self._previous[(device_id, phase)] = previous
        self._seeded.add(device_id)

    def forget(self, device_id: str) -> None:
        """Drop a device (deleted, or its seed is suspect) so it is seeded again."""
        self._seeded.discard(device_id)
        for key in [k for k in self._previous if k[0] == device_id]:
            del self._previous[key]

    def observe(
        self, device_id: str, phase: str, ts: datetime, energy_kwh: float, boot: str, seq: int
    ) -> Delta:
        key = (device_id, phase)
        previous = self._previous.get(key)
        if previous is None:
            self._previous[key] = Previous(ts, energy_kwh, boot, seq)
            return Delta(None, (Flag.FIRST_READING.value,))
        if ts == previous.ts:
            # A redelivery; the unique key turns it into a counted duplicate.
            return Delta(None, ())
        if ts < previous.ts:
            # Late arrival: its delta needs both neighbours, which a later pass recomputes.
            return Delta(None, (Flag.OUT_OF_ORDER.value,))
        self._previous[key] = Previous(ts, energy_kwh, boot, seq)
        if energy_kwh < previous.energy_kwh:
            return Delta(None, (Flag.COUNTER_RESET.value,))
        return Delta(energy_kwh - previous.energy_kwh, ())
