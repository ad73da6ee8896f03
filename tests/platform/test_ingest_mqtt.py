"""The whole ingest path over a real Mosquitto into real TimescaleDB."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiomqtt
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import CollectorRegistry

from ems_platform.admin.devices import add_device, get_device
from ems_platform.core.db import Pool, open_pool
from ems_platform.ingest.metrics import IngestMetrics
from ems_platform.ingest.pg_store import PgReadingStore
from ems_platform.ingest.service import Ingest
from ems_platform.ingest.source import MqttConfig
from ems_timescale import LocalCluster
from tests.platform.payloads import encode, sample
from tests.support.mosquitto import MosquittoBroker

POLL_ATTEMPTS = 3000  # x 20 ms: a bound for a stuck test, not a performance target


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(POLL_ATTEMPTS):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def count(pool: Pool, sql: str, *args: Any) -> int:
    return int(await pool.fetchval(sql, *args))


@asynccontextmanager
async def running_ingest(
    pool: Pool, broker: MosquittoBroker, **options: Any
) -> AsyncIterator[Ingest]:
    high_water = options.pop("high_water", 100)
    mqtt = MqttConfig(
        host=broker.host,
        port=broker.port,
        client_id=f"ems-platform-ingest-{uuid.uuid4().hex[:8]}",
        username="ems-platform",
        password=None,
        high_water=high_water,
        reconnect_cap=0.5,
    )
    options.setdefault("batch_rows", 50)
    options.setdefault("flush_interval", 0.02)
    options.setdefault("retry_cap", 0.5)
    ingest = Ingest(PgReadingStore(pool), mqtt, IngestMetrics(CollectorRegistry()), **options)
    async with ingest:

        async def connected() -> bool:
            return ingest.connected

        await eventually(connected)
        yield ingest


@asynccontextmanager
async def device(broker: MosquittoBroker, device_id: str = "dev1") -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(broker.host, broker.port, identifier=device_id) as client:
        yield client


async def publish(client: aiomqtt.Client, topic: str, payload: bytes, retain: bool = False) -> None:
    await client.publish(topic, payload, qos=1, retain=retain)


async def verdicts(pool: Pool) -> list[tuple[str, str | None]]:
    rows = await pool.fetch("SELECT verdict, reason FROM raw_events ORDER BY id")
    return [(r["verdict"], r["reason"]) for r in rows]


async def test_good_sample_is_stored_and_audited(
    pool: Pool, mosquitto_broker: MosquittoBroker
) -> None:
    async with running_ingest(pool, mosquitto_broker), device(mosquitto_broker) as dev:
        await publish(dev, "ems/dev1/telemetry", encode(sample()))

        async def stored() -> bool:
            return await count(pool, "SELECT count(*) FROM raw_events") == 1

        await eventually(stored)
    assert await count(pool, "SELECT count(*) FROM energy_readings WHERE device_id='dev1'") == 3
    assert await verdicts(pool) == [("accepted", None)]


async def test_bad_sample_in_batch_and_malformed_payload_do_not_stop_the_rest(
    pool: Pool, mosquitto_broker: MosquittoBroker
) -> None:
    bad = sample(1)
    bad["phases"]["A"]["current_rms"] = -1
    async with running_ingest(pool, mosquitto_broker), device(mosquitto_broker) as dev:
        await publish(dev, "ems/dev1/telemetry", encode({"v": 1, "samples": [sample(0), bad]}))
        await publish(dev, "ems/dev1/telemetry", b"\x00not json at all")
        await publish(dev, "ems/dev1/telemetry", encode(sample(2)))

        async def all_three() -> bool:
            return await count(pool, "SELECT count(*) FROM raw_events") == 3

        await eventually(all_three)
    assert await verdicts(pool) == [
        ("partial", "invalid_sample"),
        ("quarantined", "invalid_json"),
        ("accepted", None),
    ]
    seqs = await pool.fetch("SELECT DISTINCT seq FROM energy_readings ORDER BY seq")
    assert [r["seq"] for r in seqs] == [0, 2]
    detail = json.loads(
        await pool.fetchval("SELECT detail FROM raw_events WHERE verdict = 'partial'")
    )
    assert detail[0]["index"] == 1 and detail[0]["reason"] == "invalid_sample"


async def test_redelivered_sample_counts_as_duplicate(
    pool: Pool, mosquitto_broker: MosquittoBroker
) -> None:
    payload = encode(sample())
    async with running_ingest(pool, mosquitto_broker) as ingest, device(mosquitto_broker) as dev:
        await publish(dev, "ems/dev1/telemetry", payload)
        await publish(dev, "ems/dev1/telemetry", payload)

        async def both() -> bool:
            return await count(pool, "SELECT count(*) FROM raw_events") == 2

        await eventually(both)
        assert ingest.metrics.value("ems_ingest_duplicates_total") == 3
    assert await count(pool, "SELECT count(*) FROM energy_readings") == 3
    assert await verdicts(pool) == [("accepted", None), ("duplicate", None)]


def _connect_with_will_then_vanish(host: str, port: int) -> None:
    """A device that registers its last will and then loses its link without DISCONNECT."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="dev1")
    client.will_set("ems/dev1/status", b'{"v":1,"state":"offline"}', qos=1, retain=True)
    client.connect(host, port, keepalive=60)
    while not client.is_connected():
        client.loop(timeout=0.1)
    sock = client.socket()
    assert sock is not None
    sock.close()  # no DISCONNECT: the broker must publish the will


async def test_status_online_then_last_will_offline(
    pool: Pool, mosquitto_broker: MosquittoBroker
) -> None:
    await add_device(pool, "dev1")
    online = {"v": 1, "state": "online", "ts": "2026-11-22T08:00:00Z", "boot": "b1"}
    async with running_ingest(pool, mosquitto_broker):
        async with device(mosquitto_broker, "dev1-setup") as dev:
            await publish(dev, "ems/dev1/status", encode(online), retain=True)

        async def is_online() -> bool:
            found = await get_device(pool, "dev1")
            return found is not None and found.online

        await eventually(is_online)
        await asyncio.to_thread(
            _connect_with_will_then_vanish, mosquitto_broker.host, mosquitto_broker.port
        )

        async def is_offline() -> bool:
            found = await get_device(pool, "dev1")
            return found is not None and not found.online

        await eventually(is_offline)
    found = await get_device(pool, "dev1")
    assert found is not None and found.status == {"v": 1, "state": "offline"}


async def test_ack_updates_the_command(pool: Pool, mosquitto_broker: MosquittoBroker) -> None:
    await add_device(pool, "dev1")
    cid = uuid.uuid4()
    await pool.execute(
        "INSERT INTO commands (id, device_id, name, state) VALUES ($1, 'dev1', 'ping', 'pending')",
        cid,
    )
    ack = {"v": 1, "id": str(cid), "status": "error", "ts": "2026-11-22T08:00:01Z", "error": "x"}
    async with running_ingest(pool, mosquitto_broker), device(mosquitto_broker) as dev:
        await publish(dev, "ems/dev1/cmd/ack", encode(ack))

        async def acked() -> bool:
            state = await pool.fetchval("SELECT state FROM commands WHERE id = $1", cid)
            return bool(state == "error")

        await eventually(acked)


async def test_ingest_reconnects_after_a_broker_restart(
    pool: Pool, mosquitto_broker: MosquittoBroker
) -> None:
    async with running_ingest(pool, mosquitto_broker) as ingest:
        await asyncio.to_thread(mosquitto_broker.stop)

        async def down() -> bool:
            return not ingest.connected

        await eventually(down)
        await asyncio.to_thread(mosquitto_broker.start)

        async def up() -> bool:
            return ingest.connected

        await eventually(up)
        async with device(mosquitto_broker) as dev:
            await publish(dev, "ems/dev1/telemetry", encode(sample()))

        async def stored() -> bool:
            return await count(pool, "SELECT count(*) FROM energy_readings") == 3

        await eventually(stored)


@pytest.mark.timeout(240)
async def test_database_outage_loses_nothing_and_pauses_mqtt_reads(
    private_pg_cluster: LocalCluster, mosquitto_broker: MosquittoBroker
) -> None:
    messages = 60
    async with open_pool(private_pg_cluster.dsn(), min_size=1, max_size=3) as pool:
        async with (
            running_ingest(pool, mosquitto_broker, batch_rows=2, high_water=4) as ingest,
            device(mosquitto_broker) as dev,
        ):
            await publish(dev, "ems/dev1/telemetry", encode(sample(0, phases=("A",))))

            async def first_stored() -> bool:
                return await count(pool, "SELECT count(*) FROM energy_readings") == 1

            await eventually(first_stored)
            await private_pg_cluster.stop()
            for i in range(1, messages):
                await publish(dev, "ems/dev1/telemetry", encode(sample(i, phases=("A",))))

            async def backed_up() -> bool:
                return ingest.source.paused and not ingest.store_healthy

            await eventually(backed_up)
            assert ingest.source.queued <= 4 + 1  # bounded by the high-water mark, not by load
            await private_pg_cluster.start()

            async def all_stored() -> bool:
                try:
                    n = await count(pool, "SELECT count(*) FROM energy_readings")
                except (OSError, ConnectionError) as exc:  # pool still reconnecting
                    del exc
                    return False
                return n == messages

            await eventually(all_stored)
            assert not ingest.source.paused
        assert await count(pool, "SELECT count(*) FROM raw_events") == messages
        flags = await pool.fetch(
            "SELECT seq, flags, energy_delta_kwh FROM energy_readings ORDER BY seq"
        )
        assert flags[0]["flags"] == ["first_reading"]
        assert all(r["energy_delta_kwh"] is not None for r in flags[1:])
