"""The newest reading per phase of a device: by sample time, never by arrival."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from ems_contract import MEASUREMENTS, PHASES
from ems_platform.admin.devices import DeviceRow
from ems_platform.core.db import Pool

# One index probe per phase (the unique key leads with device_id, phase, ts), instead of
# a DISTINCT ON that would scan every stored reading of the device.
_LATEST = f"""
SELECT p.phase, r.ts, {", ".join(f"r.{m}" for m in MEASUREMENTS)},
       r.energy_delta_kwh, r.flags, r.seq, r.boot, r.received_at
FROM unnest($2::text[]) AS p(phase)
CROSS JOIN LATERAL (
    SELECT * FROM energy_readings
    WHERE device_id = $1 AND phase = p.phase
    ORDER BY ts DESC LIMIT 1
) AS r
ORDER BY p.phase
"""


class PhaseLatest(BaseModel):
    ts: datetime
    voltage_rms: float
    current_rms: float
    power_watt: float
    power_var: float
    power_va: float
    power_factor: float
    voltage_thd: float
    current_thd: float
    energy_kwh: float
    energy_delta_kwh: float | None
    flags: list[str]
    seq: int
    boot: str
    received_at: datetime


class Latest(BaseModel):
    device_id: str
    ts: datetime | None
    phases: dict[str, PhaseLatest]
    status: dict[str, Any] | None
    online: bool
    last_seen: datetime | None


async def latest_readings(pool: Pool, device: DeviceRow) -> Latest:
    records = await pool.fetch(_LATEST, device.device_id, list(PHASES))
    phases = {r["phase"]: PhaseLatest.model_validate(dict(r)) for r in records}
    newest = max((p.ts for p in phases.values()), default=None)
    return Latest(
        device_id=device.device_id,
        ts=newest,
        phases=phases,
        status=device.status,
        online=device.online,
        last_seen=device.last_seen,
    )
