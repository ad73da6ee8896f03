"""Builders of wire-contract payloads for the platform tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from ems_contract import MEASUREMENTS

BASE_TS = datetime(2026, 11, 22, 8, 15, 3, tzinfo=UTC)


def reading(energy: float = 100.0, power: float = 1000.0) -> dict[str, float]:
    values = dict.fromkeys(MEASUREMENTS, 1.0)
    values.update(
        voltage_rms=230.0,
        current_rms=4.5,
        power_watt=power,
        power_var=200.0,
        power_va=1050.0,
        power_factor=0.95,
        energy_kwh=energy,
    )
    return values


def sample(
    seconds: int = 0,
    *,
    energy: float = 100.0,
    phases: tuple[str, ...] = ("A", "B", "C"),
    seq: int | None = None,
    ts: Any = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "v": 1,
        "ts": ts if ts is not None else (BASE_TS + timedelta(seconds=seconds)).isoformat(),
        "seq": seconds if seq is None else seq,
        "boot": "boot1",
        "phases": {p: reading(energy + seconds * 0.01) for p in phases},
        **extra,
    }


def encode(payload: Any) -> bytes:
    return json.dumps(payload).encode()
