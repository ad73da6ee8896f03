"""The real store against real TimescaleDB: idempotent COPY batches, audit rows, updates."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from ems_platform.admin.devices import add_device, get_device
from ems_platform.core.db import Pool
from ems_platform.ingest.batcher import STORE_REJECTED, BatchWriter
from ems_platform.ingest.envelope import Envelope, Incoming
from ems_platform.ingest.judge import Judge
from ems_platform.ingest.metrics import IngestMetrics
from ems_platform.ingest.pg_store import PgReadingStore
from ems_platform.ingest.store import BatchRejectedError, StoreUnavailableError
from tests.platform.payloads import BASE_TS, encode, sample

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def judged(judge: Judge, topic: str, payload: bytes, at: datetime = NOW) -> Envelope:
    return judge.judge(Incoming(topic, payload, at))


async def raw_events(pool: Pool) -> list[dict[str, object]]:
    rows = await pool.fetch(
        "SELECT topic, device_id, payload, verdict, reason, detail FROM raw_events ORDER BY id"
    )
    return [dict(r) for r in rows]


async def test_good_sample_lands_one_row_per_phase_and_an_accepted_event(pool: Pool) -> None:
    store, judge = PgReadingStore(pool), Judge()
    payload = encode(sample())
    assert await store.write([judged(judge, "ems/dev1/telemetry", payload)]) == [3]
    rows = await pool.fetch("SELECT * FROM energy_readings ORDER BY phase")
    assert [r["phase"] for r in rows] == ["A", "B", "C"]
    assert all(r["ts"] == BASE_TS and r["flags"] == ["first_reading"] for r in rows)
    assert rows[0]["voltage_rms"] == 230.0 and rows[0]["boot"] == "boot1"
    [event] = await raw_events(pool)
    assert event["verdict"] == "accepted" and event["reason"] is None
    assert event["payload"] == payload  # bytes exactly as received


async def test_rows_are_copied_in_key_order_whatever_order_they_arrived_in(pool: Pool) -> None:
    store, judge = PgReadingStore(pool), Judge()
    devices = ["dev3", "dev1", "dev2"]
    # Round-robin over the devices, as a fleet's messages arrive.
    batch = [
        judged(judge, f"ems/{device}/telemetry", encode(sample(second, energy=1.0 + second / 1e3)))
        for second in range(4)
        for device in devices
    ]
    assert await store.write(batch) == [3] * len(batch)
    # The heap's order (ctid) is the order the COPYs sent them in: the unflagged rows, then
    # those with flags (here each series' first row), each COPY in key order.
    stored = await pool.fetch(
        "SELECT device_id, phase, ts, seq, flags FROM energy_readings ORDER BY ctid"
    )
    assert len(stored) == 3 * len(batch)
    plain = [(r["device_id"], r["phase"], r["ts"]) for r in stored if not r["flags"]]
    flagged = [(r["device_id"], r["phase"], r["seq"]) for r in stored if r["flags"]]
    assert len(plain) == 3 * 3 * 3 and plain == sorted(plain)
    assert flagged == [(device, phase, 0) for device in sorted(devices) for phase in "ABC"]
    assert [r["flags"] for r in stored[-len(flagged) :]] == [["first_reading"]] * len(flagged)


async def test_bad_sample_in_batch_is_quarantined_with_index_and_reason(pool: Pool) -> None:
    store, judge = PgReadingStore(pool), Judge()
    bad = sample(1)
    bad["phases"]["B"]["power_factor"] = 3.0
    env = judged(judge, "ems/dev1/telemetry", encode({"v": 1, "samples": [sample(0), bad]}))
    assert await store.write([env]) == [3]
    assert await pool.fetchval("SELECT count(*) FROM energy_readings WHERE seq = 1") == 0
    [event] = await raw_events(pool)
    assert event["verdict"] == "partial" and event["reason"] == "invalid_sample"
    detail = json.loads(str(event["detail"]))
    assert detail[0]["index"] == 1 and "power_factor" in detail[0]["detail"]


async def test_malformed_payload_is_quarantined_and_the_next_sample_stored(pool: Pool) -> None:
    store, judge = PgReadingStore(pool), Judge()
    batch = [
        judged(judge, "ems/dev1/telemetry", b'{"v": 1, "ts": '),
        judged(judge, "ems/dev1/telemetry", encode(sample(5))),
    ]
    assert await store.write(batch) == [0, 3]
    events = await raw_events(pool)
    assert [(e["verdict"], e["reason"]) for e in events] == [
        ("quarantined", "invalid_json"),
        ("accepted", None),
    ]
    assert events[0]["payload"] == b'{"v": 1, "ts": '


async def test_redelivery_is_a_duplicate_not_stored_twice(pool: Pool) -> None:
    store, judge = PgReadingStore(pool), Judge()
    payload = encode(sample())
    assert await store.write([judged(judge, "ems/dev1/telemetry", payload)]) == [3]
    assert await store.write([judged(judge, "ems/dev1/telemetry", payload)]) == [0]
    # The same key twice inside one batch: the first message gets it, the second is duplicate.
    twice = encode(sample(7))
    envs = [judged(judge, "ems/dev1/telemetry", twice) for _ in range(2)]
    assert await store.write(envs) == [3, 0]
    assert await pool.fetchval("SELECT count(*) FROM energy_readings") == 6
    verdicts = [e["verdict"] for e in await raw_events(pool)]
    assert verdicts == ["accepted", "duplicate", "accepted", "duplicate"]


async def test_deltas_are_taken_against_the_database(pool: Pool) -> None:
    store = PgReadingStore(pool)
    judge = Judge()
    await store.write([judged(judge, "ems/dev1/telemetry", encode(sample(0, energy=10)))])
    # A new process (fresh store and judge) takes the delta against what is stored
    # (seq 0 -> 60 in one boot: a gap).
    env = judged(Judge(), "ems/dev1/telemetry", encode(sample(60, energy=10)))
    await PgReadingStore(pool).write([env])
    row = await pool.fetchrow(
        "SELECT ts, energy_delta_kwh, flags FROM energy_readings WHERE phase = 'A' AND seq = 60"
    )
    assert row is not None
    assert row["energy_delta_kwh"] == pytest.approx(0.6) and row["flags"] == ["gap"]
    assert row["ts"] == BASE_TS + timedelta(seconds=60)


async def test_status_updates_the_device_and_stale_status_does_not(pool: Pool) -> None:
    await add_device(pool, "dev1")
    store, judge = PgReadingStore(pool), Judge()
    online = {"v": 1, "state": "online", "ts": "2026-11-22T08:00:00Z", "boot": "b", "backlog": 2}
    await store.write([judged(judge, "ems/dev1/status", encode(online))])
    device = await get_device(pool, "dev1")
    assert device is not None and device.online and device.last_seen == NOW
    assert device.status == {**online, "ts": "2026-11-22T08:00:00.000Z"}
    # An older status (a retained replay, or one overtaken) changes nothing.
    older = {"v": 1, "state": "offline", "ts": "2026-11-22T07:00:00Z", "reason": "shutdown"}
    await store.write([judged(judge, "ems/dev1/status", encode(older))])
    device = await get_device(pool, "dev1")
    assert device is not None and device.online
    # The last will has no ts; it counts from its arrival.
    will = judged(judge, "ems/dev1/status", b'{"v":1,"state":"offline"}', NOW + timedelta(hours=1))
    await store.write([will])
    device = await get_device(pool, "dev1")
    assert device is not None and not device.online
    assert device.status == {"v": 1, "state": "offline"}
    assert device.status_at == NOW + timedelta(hours=1)


async def test_telemetry_updates_last_seen(pool: Pool) -> None:
    await add_device(pool, "dev1")
    store, judge = PgReadingStore(pool), Judge()
    later = NOW + timedelta(minutes=5)
    await store.write([judged(judge, "ems/dev1/telemetry", encode(sample()), later)])
    device = await get_device(pool, "dev1")
    assert device is not None and device.last_seen == later


async def test_ack_updates_the_command(pool: Pool) -> None:
    await add_device(pool, "dev1")
    cid = uuid.uuid4()
    await pool.execute(
        "INSERT INTO commands (id, device_id, name, state)"
        " VALUES ($1, 'dev1', 'ping', 'delivered')",
        cid,
    )
    store, judge = PgReadingStore(pool), Judge()
    ack = {"v": 1, "id": str(cid), "status": "ok", "ts": "2026-11-22T08:00:01Z", "result": {"a": 1}}
    await store.write([judged(judge, "ems/dev1/cmd/ack", encode(ack))])
    row = await pool.fetchrow("SELECT state, acked_at, result FROM commands WHERE id = $1", cid)
    assert row is not None and row["state"] == "ok"
    assert json.loads(row["result"]) == {"a": 1}


async def test_refused_message_is_isolated_and_quarantined(pool: Pool) -> None:
    await add_device(pool, "dev1")
    store, judge = PgReadingStore(pool), Judge()
    # PostgreSQL's jsonb cannot hold \u0000, so the database refuses this status outright.
    poison = judged(judge, "ems/dev1/status", b'{"v":1,"state":"online","agent":"a\\u0000b"}')
    good = judged(judge, "ems/dev1/telemetry", encode(sample()))
    with pytest.raises(BatchRejectedError):
        await store.write([poison, good])
    writer = BatchWriter(
        store, IngestMetrics(CollectorRegistry()), max_rows=100, flush_interval=3600
    )
    await writer.add(poison)
    await writer.add(good)
    await writer.flush()
    assert await pool.fetchval("SELECT count(*) FROM energy_readings") == 3
    events = await raw_events(pool)
    assert sorted((e["verdict"], e["reason"]) for e in events) == [
        ("accepted", None),
        ("quarantined", STORE_REJECTED),
    ]


class _BrokenPool:
    """Stands in for a pool whose connection broke mid-operation (pure-logic unit test)."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def acquire(self) -> object:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.exceptions.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        ),
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        ConnectionRefusedError(111, "Connect call failed"),
    ],
)
async def test_connection_failures_are_transient_not_fatal(error: BaseException) -> None:
    """A database going away mid-batch must make the batcher retry, never stop the ingest."""
    store = PgReadingStore(_BrokenPool(error))  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailableError):
        await store.write([])


async def test_write_lanes_commit_at_once_and_chain_deltas_across_batches(pool: Pool) -> None:
    """Two lanes, each its own transaction on its own connection; then a second batch of
    the same devices: every delta is taken from the previous sample, none missing."""
    devices = [f"lane{n:02d}" for n in range(12)]
    for device in devices:
        await add_device(pool, device)
    store, judge = PgReadingStore(pool), Judge()
    writer = BatchWriter(
        store, IngestMetrics(CollectorRegistry()), max_rows=10_000, flush_interval=3600, lanes=2
    )
    for second in range(0, 6, 3):  # two batches of three samples per device
        for offset in range(3):
            for device in devices:
                await writer.add(
                    judged(judge, f"ems/{device}/telemetry", encode(sample(second + offset)))
                )
        await writer.flush()
    assert writer.committed_batches == 2
    rows = await pool.fetch(
        "SELECT device_id, seq, energy_delta_kwh, flags FROM energy_readings"
        " WHERE phase = 'A' ORDER BY device_id, ts"
    )
    assert len(rows) == len(devices) * 6
    for row in rows:
        if row["seq"] == 0:
            assert row["energy_delta_kwh"] is None and row["flags"] == ["first_reading"]
        else:
            assert row["energy_delta_kwh"] == pytest.approx(0.01) and row["flags"] == []
    assert await pool.fetchval("SELECT count(*) FROM raw_events WHERE verdict = 'accepted'") == (
        len(devices) * 6
    )
