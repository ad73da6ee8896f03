"""Quality rules on crafted sequences, computed by the real store against real TimescaleDB."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from ems_platform.core.db import Pool
from ems_platform.ingest.deltas import QualityRules
from ems_platform.ingest.envelope import Envelope, Incoming
from ems_platform.ingest.judge import Judge
from ems_platform.ingest.pg_store import PgReadingStore
from tests.platform.payloads import BASE_TS, encode

NOW = BASE_TS + timedelta(hours=1)
TOPIC = "ems/dev1/telemetry"


def at(seconds: float) -> datetime:
    return BASE_TS + timedelta(seconds=seconds)


def sample(
    seconds: float,
    energy: float,
    *,
    seq: int | None = None,
    boot: str = "b1",
    ts: Any = None,
    units: dict[str, str] | None = None,
    power: float = 1000.0,
) -> dict[str, Any]:
    """Phase A only; ``energy`` and ``power`` are in the units given (kWh, W by default);
    one sample a minute unless ``seq`` says otherwise."""
    values = {
        "voltage_rms": 230.0,
        "current_rms": 4.5,
        "power_watt": power,
        "power_var": 200.0,
        "power_va": 1050.0,
        "power_factor": 0.95,
        "voltage_thd": 1.0,
        "current_thd": 2.0,
        "energy_kwh": energy,
    }
    payload: dict[str, Any] = {
        "v": 1,
        "ts": ts if ts is not None else at(seconds).isoformat(),
        "seq": int(seconds) // 60 if seq is None else seq,
        "boot": boot,
        "phases": {"A": values},
    }
    if units is not None:
        payload["units"] = units
    return payload


def envelope(payload: dict[str, Any], received: datetime = NOW) -> Envelope:
    return Judge().judge(Incoming(TOPIC, encode(payload), received))


async def write(store: PgReadingStore, *payloads: dict[str, Any]) -> list[int]:
    """One batch (one transaction) holding one message per payload."""
    return await store.write([envelope(p) for p in payloads])


async def series(pool: Pool) -> list[tuple[datetime, float | None, list[str]]]:
    rows = await pool.fetch(
        "SELECT ts, energy_delta_kwh, flags FROM energy_readings"
        " WHERE device_id = 'dev1' AND phase = 'A' ORDER BY ts"
    )
    return [(r["ts"], r["energy_delta_kwh"], list(r["flags"])) for r in rows]


def check(
    got: list[tuple[datetime, float | None, list[str]]],
    want: list[tuple[float, float | None, list[str]]],
) -> None:
    assert [g[0] for g in got] == [at(w[0]) for w in want]
    for (_, delta, flags), (_, want_delta, want_flags) in zip(got, want, strict=True):
        assert flags == want_flags
        if want_delta is None:
            assert delta is None
        else:
            assert delta == pytest.approx(want_delta)


async def test_in_order_deltas_and_a_counter_reset(pool: Pool) -> None:
    store = PgReadingStore(pool)
    await write(store, sample(0, 10.0), sample(60, 10.5), sample(120, 10.75))
    await write(store, sample(180, 1.0), sample(240, 1.5))  # meter reset, same boot
    check(
        await series(pool),
        [
            (0, None, ["first_reading"]),
            (60, 0.5, []),
            (120, 0.25, []),
            (180, None, ["counter_reset"]),
            (240, 0.5, []),
        ],
    )


async def test_reboot_with_lower_counter_is_a_reset_and_a_higher_one_a_delta(pool: Pool) -> None:
    store = PgReadingStore(pool)
    await write(store, sample(0, 50.0, seq=7))
    await write(store, sample(60, 2.0, seq=0, boot="b2"))  # new boot, counter restarted
    await write(store, sample(120, 3.0, seq=0, boot="b3"))  # new boot, counter kept
    check(
        await series(pool),
        [(0, None, ["first_reading"]), (60, None, ["counter_reset"]), (120, 1.0, [])],
    )


async def test_gap_only_within_one_boot(pool: Pool) -> None:
    store = PgReadingStore(pool)
    await write(store, sample(0, 1.0, seq=0), sample(60, 1.1, seq=1), sample(120, 1.2, seq=5))
    await write(store, sample(180, 1.3, seq=0, boot="b2"))
    check(
        await series(pool),
        [(0, None, ["first_reading"]), (60, 0.1, []), (120, 0.1, ["gap"]), (180, 0.1, [])],
    )


async def test_late_sample_recomputes_its_successor_and_fills_the_gap(pool: Pool) -> None:
    store = PgReadingStore(pool)
    await write(store, sample(0, 10.0), sample(120, 11.0))
    check(await series(pool), [(0, None, ["first_reading"]), (120, 1.0, ["gap"])])
    await write(store, sample(60, 10.25))  # the missing sample arrives late
    check(
        await series(pool),
        [(0, None, ["first_reading"]), (60, 0.25, ["out_of_order"]), (120, 0.75, [])],
    )


async def test_late_sample_before_the_first_takes_first_reading(pool: Pool) -> None:
    store = PgReadingStore(pool)
    await write(store, sample(60, 10.5))
    await write(store, sample(0, 10.0))
    check(
        await series(pool),
        [(0, None, ["first_reading", "out_of_order"]), (60, 0.5, [])],
    )


async def test_arrival_order_inside_one_batch_counts_as_late(pool: Pool) -> None:
    store = PgReadingStore(pool)
    # Two messages, newer first, in one transaction: as if each had been committed alone.
    await write(store, sample(0, 10.0), sample(120, 11.0), sample(60, 10.5))
    check(
        await series(pool),
        [(0, None, ["first_reading"]), (60, 0.5, ["out_of_order"]), (120, 0.5, [])],
    )


async def test_late_sample_with_lower_counter_resets_and_successor_follows(pool: Pool) -> None:
    store = PgReadingStore(pool)
    await write(store, sample(0, 10.0), sample(120, 11.0))
    await write(store, sample(60, 5.0))
    check(
        await series(pool),
        [
            (0, None, ["first_reading"]),
            (60, None, ["counter_reset", "out_of_order"]),
            (120, 6.0, []),
        ],
    )


async def test_exact_duplicates_are_counted_not_stored(pool: Pool) -> None:
    store = PgReadingStore(pool)
    assert await write(store, sample(0, 10.0), sample(60, 10.5)) == [1, 1]
    assert await write(store, sample(60, 10.5), sample(60, 10.5), sample(120, 11.0)) == [0, 0, 1]
    check(await series(pool), [(0, None, ["first_reading"]), (60, 0.5, []), (120, 0.5, [])])
    verdicts = [
        r["verdict"] for r in await pool.fetch("SELECT verdict FROM raw_events ORDER BY id")
    ]
    assert verdicts == ["accepted", "accepted", "duplicate", "duplicate", "accepted"]


async def test_conflicting_duplicate_is_quarantined_with_key_and_fields(pool: Pool) -> None:
    store = PgReadingStore(pool)
    await write(store, sample(0, 10.0))
    payload = sample(0, 10.5)
    assert await write(store, payload) == [0]
    check(await series(pool), [(0, None, ["first_reading"])])  # the stored row is untouched
    event = await pool.fetchrow("SELECT * FROM raw_events ORDER BY id DESC LIMIT 1")
    assert event is not None
    assert event["verdict"] == "quarantined" and event["reason"] == "conflict"
    assert event["payload"] == encode(payload)
    [detail] = json.loads(event["detail"])
    assert detail["key"] == {"device_id": "dev1", "phase": "A", "ts": at(0).isoformat()}
    assert detail["fields"] == {"energy_kwh": {"stored": 10.0, "received": 10.5}}


async def test_conflict_inside_one_batch_keeps_the_first(pool: Pool) -> None:
    store = PgReadingStore(pool)
    assert await write(store, sample(0, 10.0), sample(0, 10.0, seq=9)) == [1, 0]
    reasons = [r["reason"] for r in await pool.fetch("SELECT reason FROM raw_events ORDER BY id")]
    assert reasons == [None, "conflict"]
    assert await pool.fetchval("SELECT seq FROM energy_readings") == 0


async def test_unit_variants_are_normalised_before_deltas(pool: Pool) -> None:
    store = PgReadingStore(pool)
    await write(
        store,
        sample(0, 10_000.0, units={"energy": "Wh", "power": "kW"}, power=1.5),
        sample(60, 10.25, units={"energy": "kWh", "power": "W"}),
        sample(120, 0.0105, units={"energy": "MWh"}),
    )
    check(await series(pool), [(0, None, ["first_reading"]), (60, 0.25, []), (120, 0.25, [])])
    watts = await pool.fetchval("SELECT power_watt FROM energy_readings WHERE ts = $1", at(0))
    assert watts == pytest.approx(1500.0)


async def test_time_zone_offsets_are_stored_as_utc(pool: Pool) -> None:
    store = PgReadingStore(pool)
    plus_two = (at(0) + timedelta(hours=2)).replace(tzinfo=None).isoformat() + "+02:00"
    minus_five = (at(60) - timedelta(hours=5)).replace(tzinfo=None).isoformat() + "-05:00"
    epoch_ms = int(at(120).timestamp() * 1000)
    await write(
        store,
        sample(0, 10.0, ts=plus_two),
        sample(60, 10.1, ts=minus_five),
        sample(120, 10.2, ts=epoch_ms),
    )
    check(await series(pool), [(0, None, ["first_reading"]), (60, 0.1, []), (120, 0.1, [])])
    assert all(
        ts.tzinfo is not None and ts.utcoffset() == timedelta(0) for ts, *_ in await series(pool)
    )


async def test_future_timestamp_beyond_the_clock_skew(pool: Pool) -> None:
    store = PgReadingStore(pool, QualityRules(clock_skew_s=300))
    received = at(0)
    batch = [
        envelope(sample(0, 10.0, seq=0), received),
        envelope(sample(300, 10.1, seq=1), received),  # exactly at the tolerance: fine
        envelope(sample(301, 10.2, seq=2), received),
    ]
    await store.write(batch)
    check(
        await series(pool),
        [(0, None, ["first_reading"]), (300, 0.1, []), (301, 0.1, ["future_timestamp"])],
    )


async def test_suspicious_jump_is_a_rate_so_long_gaps_do_not_alarm(pool: Pool) -> None:
    store = PgReadingStore(pool, QualityRules(max_kw=100))
    payloads = [
        sample(0, 0.0, seq=0),
        sample(36, 1.0, seq=1),  # 1 kWh in 36 s = 100 kW: at the bound, fine
        sample(72, 2.1, seq=2),  # 1.1 kWh in 36 s = 110 kW: suspicious
        sample(72 + 86_400, 1000.0, seq=3),  # ~998 kWh over a day = ~41.6 kW: fine
    ]
    await store.write([envelope(p, at(100_000)) for p in payloads])
    check(
        await series(pool),
        [
            (0, None, ["first_reading"]),
            (36, 1.0, []),
            (72, 1.1, ["suspicious_jump"]),
            (72 + 86_400, 997.9, []),
        ],
    )


async def test_state_is_rebuilt_from_the_database_after_a_restart(pool: Pool) -> None:
    await write(PgReadingStore(pool), sample(0, 10.0, seq=0), sample(60, 10.5, seq=2))
    check(await series(pool), [(0, None, ["first_reading"]), (60, 0.5, ["gap"])])
    # New processes: nothing in memory; everything they need is read in the transaction.
    await write(PgReadingStore(pool), sample(120, 10.75, seq=3))
    await write(PgReadingStore(pool), sample(30, 10.2, seq=1))
    check(
        await series(pool),
        [
            (0, None, ["first_reading"]),
            (30, 0.2, ["out_of_order"]),
            (60, 0.3, []),
            (120, 0.25, []),
        ],
    )


async def test_two_writers_on_one_device_interleaved(pool: Pool) -> None:
    """Two workers got alternate samples of one device ($share): deltas as if one wrote all."""
    first, second = PgReadingStore(pool), PgReadingStore(pool)
    evens = [sample(t, 10.0 + t / 100, seq=t // 60) for t in range(0, 1200, 120)]
    odds = [sample(t, 10.0 + t / 100, seq=t // 60) for t in range(60, 1200, 120)]
    # All twenty single-sample transactions at once, half through each writer.
    await asyncio.gather(
        *(write(first, even) for even in evens), *(write(second, odd) for odd in odds)
    )
    got = await series(pool)
    assert [g[0] for g in got] == [at(t) for t in range(0, 1200, 60)]
    assert got[0][1] is None and "first_reading" in got[0][2]
    # Whichever transaction committed first, each row's delta is against its predecessor,
    # and no gap or first_reading is left behind by the order of commits.
    for _, delta, flags in got[1:]:
        assert delta == pytest.approx(0.6)
        assert set(flags) <= {"out_of_order"}


async def test_two_batch_transactions_interleave_without_losing_a_delta(pool: Pool) -> None:
    """Many concurrent batches over three devices: the end state equals one serial writer."""
    stores = [PgReadingStore(pool) for _ in range(4)]

    def msg(device: str, t: int) -> Envelope:
        payload = sample(t, 5.0 + t / 1000, seq=t // 10)
        return Judge().judge(Incoming(f"ems/{device}/telemetry", encode(payload), NOW))

    batches = [
        [msg(device, t) for device in ("dev1", "dev2", "dev3")[:: 1 if n % 2 else -1]]
        for n, t in enumerate(range(0, 400, 10))
    ]
    await asyncio.gather(*(stores[n % 4].write(batch) for n, batch in enumerate(batches)))
    rows = await pool.fetch(
        "SELECT device_id, ts, energy_delta_kwh, flags FROM energy_readings ORDER BY device_id, ts"
    )
    assert len(rows) == 3 * 40
    for row in rows:
        if row["ts"] == at(0):
            assert "first_reading" in row["flags"] and row["energy_delta_kwh"] is None
        else:
            assert row["energy_delta_kwh"] == pytest.approx(0.01)
            assert set(row["flags"]) <= {"out_of_order"}
