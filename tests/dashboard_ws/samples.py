"""Contract payloads for the adapter tests."""

from __future__ import annotations

from datetime import UTC, datetime

from ems_contract import PhaseReading, Sample, Status, encode


def reading(voltage: float = 230.4, power: float = 1102.5) -> PhaseReading:
    return PhaseReading(
        voltage_rms=voltage,
        current_rms=round(power / voltage, 3),
        power_watt=power,
        power_var=210.0,
        power_va=1147.4,
        power_factor=0.961,
        voltage_thd=1.8,
        current_thd=6.2,
        energy_kwh=10423.118,
    )


def telemetry(seq: int = 1, *, voltage: float = 230.4, power: float = 1102.5) -> bytes:
    sample = Sample(
        v=1,
        ts=datetime.now(UTC),
        seq=seq,
        boot="3f9c2a1e",
        phases={"A": reading(voltage, power)},
    )
    return encode(sample)


def three_phase(seq: int, powers: tuple[float, float, float]) -> bytes:
    sample = Sample(
        v=1,
        ts=datetime.now(UTC),
        seq=seq,
        boot="3f9c2a1e",
        phases={
            "A": reading(230.4, powers[0]),
            "B": reading(229.8, powers[1]),
            "C": reading(231.1, powers[2]),
        },
    )
    return encode(sample)


def status(state: str = "online") -> bytes:
    if state == "online":
        return encode(
            Status(
                v=1,
                state="online",
                ts=datetime.now(UTC),
                boot="3f9c2a1e",
                agent="ems-device/0.1.0",
                relays={"A": True, "B": True, "C": False},
                backlog=0,
            )
        )
    return encode(Status(v=1, state="offline", ts=datetime.now(UTC), reason="shutdown"))
