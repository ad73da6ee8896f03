"""The store's memory of each series' newest row (``Heads``) against a real database: used
while only this worker writes a device, dropped the moment anything else did."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ems_platform.admin.devices import add_device
from ems_platform.core.db import Pool
from ems_platform.ingest.envelope import Envelope, Incoming
from ems_platform.ingest.judge import Judge
from ems_platform.ingest.pg_store import PgReadingStore
from tests.platform.payloads import encode, sample

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
PHASES = ("A", "B", "C")


def telemetry(seconds: int, energy: float = 10.0, device: str = "dev1") -> Envelope:
    payload = encode(sample(seconds, energy=energy))
    return Judge().judge(Incoming(f"ems/{device}/telemetry", payload, NOW))


async def version(pool: Pool, device: str = "dev1") -> int | None:
    value = await pool.fetchval("SELECT readings_version FROM devices WHERE device_id = $1", device)
    return None if value is None else int(value)


async def rows(pool: Pool, phase: str = "A") -> list[tuple[int, float | None, list[str]]]:
    records = await pool.fetch(
        "SELECT seq, energy_delta_kwh, flags FROM energy_readings WHERE phase = $1 ORDER BY ts",
        phase,
    )
    return [(r["seq"], r["energy_delta_kwh"], list(r["flags"])) for r in records]


async def test_a_commit_remembers_the_newest_row_under_the_version_it_set(pool: Pool) -> None:
    await add_device(pool, "dev1")
    store = PgReadingStore(pool)
    await store.write([telemetry(0), telemetry(1)])
    current = await version(pool)
    assert current is not None
    known, unknown = store.heads.known([("dev1", p) for p in PHASES], {"dev1": current})
    assert unknown == []
    assert {series: row.seq for series, row in known.items() if row is not None} == {
        ("dev1", p): 1 for p in PHASES
    }
    # Under any other version nothing is known.
    assert store.heads.known([("dev1", "A")], {"dev1": current + 1}) == ({}, [("dev1", "A")])
    # The next batch, planned from memory alone, still chains its delta onto seq 1.
    await store.write([telemetry(2)])
    assert [(seq, flags) for seq, _, flags in await rows(pool)] == [
        (0, ["first_reading"]),
        (1, []),
        (2, []),
    ]
    assert all(delta == pytest.approx(0.01) for _, delta, _ in (await rows(pool))[1:])


async def test_two_workers_alternating_on_one_device_keep_exact_deltas(pool: Pool) -> None:
    """Each worker's memory goes stale the moment the other commits; it must notice."""
    await add_device(pool, "dev1")
    first, second = PgReadingStore(pool), PgReadingStore(pool)
    for seconds in range(6):
        worker = first if seconds % 2 == 0 else second
        await worker.write([telemetry(seconds)])
    for phase in PHASES:
        stored = await rows(pool, phase)
        assert [seq for seq, _, _ in stored] == list(range(6))
        assert stored[0][2] == ["first_reading"]
        # No gaps, no out_of_order, and every delta against the true predecessor.
        assert all(flags == [] for _, _, flags in stored[1:])
        assert all(delta == pytest.approx(0.01) for _, delta, _ in stored[1:])


async def test_a_late_row_updates_the_remembered_successor(pool: Pool) -> None:
    """A late arrival changes the stored successor's delta; memory must hold the new one."""
    await add_device(pool, "dev1")
    store = PgReadingStore(pool)
    await store.write([telemetry(0), telemetry(2, energy=10.0)])
    await store.write([telemetry(1, energy=10.0)])  # late: seq 2's predecessor is now seq 1
    await store.write([telemetry(3, energy=10.0)])
    assert await rows(pool) == [
        (0, None, ["first_reading"]),
        (1, pytest.approx(0.01), ["out_of_order"]),
        (2, pytest.approx(0.01), []),
        (3, pytest.approx(0.01), []),
    ]


async def test_an_outside_writer_is_detected_and_the_batch_still_lands_exactly(
    pool: Pool,
) -> None:
    """A row inserted behind the ingest's back (no lock, no version bump) makes the direct COPY
    collide; the batch is redone with ON CONFLICT and the collision counts as a duplicate."""
    await add_device(pool, "dev1")
    store = PgReadingStore(pool)
    await store.write([telemetry(0)])
    await pool.execute(
        """
        INSERT INTO energy_readings (device_id, phase, ts, voltage_rms, current_rms, power_watt,
            power_var, power_va, power_factor, voltage_thd, current_thd, energy_kwh, seq, boot)
        SELECT device_id, phase, ts + interval '1 second', voltage_rms, current_rms, power_watt,
            power_var, power_va, power_factor, voltage_thd, current_thd, energy_kwh + 0.01,
            seq + 1, boot
        FROM energy_readings WHERE device_id = 'dev1'
        """
    )
    # seq 1 collides with the outside rows (same values: a duplicate); seq 2 is new.
    assert await store.write([telemetry(1), telemetry(2)]) == [0, 3]
    stored = await rows(pool)
    assert [seq for seq, _, _ in stored] == [0, 1, 2]
    assert stored[2][1] == pytest.approx(0.01) and stored[2][2] == []
    verdicts = await pool.fetch("SELECT verdict FROM raw_events ORDER BY id")
    assert [r["verdict"] for r in verdicts] == ["accepted", "duplicate", "accepted"]


async def test_unregistered_devices_are_written_without_memory(pool: Pool) -> None:
    store = PgReadingStore(pool)
    await store.write([telemetry(0, device="ghost")])
    await store.write([telemetry(1, device="ghost")])
    assert store.heads.known([("ghost", "A")], {"ghost": None}) == ({}, [("ghost", "A")])
    assert await rows(pool) == [(0, None, ["first_reading"]), (1, pytest.approx(0.01), [])]
