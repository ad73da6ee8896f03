"""An unexpected error inside the ingest (a bug, not an outage) restarts it in-process, and
nothing that was read before the failure is lost: it was never acked, so Mosquitto delivers
it again."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from ems_platform.core.db import Pool
from ems_platform.ingest.envelope import Envelope
from ems_platform.ingest.metrics import IngestMetrics
from ems_platform.ingest.pg_store import PgReadingStore
from ems_platform.ingest.service import Ingest
from ems_platform.ingest.source import MqttConfig
from tests.platform.payloads import encode, sample
from tests.platform.test_ingest_mqtt import count, device, eventually, publish
from tests.support.mosquitto import MosquittoBroker


class FailsOnce(PgReadingStore):
    """The real store, with one injected bug on its first write."""

    failed = 0

    async def write(self, batch: Sequence[Envelope]) -> list[int]:
        if not self.failed:
            self.failed += 1
            raise RuntimeError("injected bug")
        return await super().write(batch)


async def test_an_unexpected_error_restarts_the_ingest_and_loses_nothing(
    pool: Pool, mosquitto_broker: MosquittoBroker
) -> None:
    store = FailsOnce(pool)
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    mqtt = MqttConfig(
        host=mosquitto_broker.host,
        port=mosquitto_broker.port,
        client_id=f"ems-platform-ingest-{uuid.uuid4().hex[:8]}",
        username="ems-platform",
        password=None,
        reconnect_cap=0.5,
    )
    ingest = Ingest(store, mqtt, metrics, batch_rows=50, flush_interval=0.02, retry_cap=0.5)
    async with ingest, device(mosquitto_broker) as dev:

        async def subscribed() -> bool:
            return ingest.connected

        await eventually(subscribed)
        for seconds in range(5):
            await publish(dev, "ems/dev1/telemetry", encode(sample(seconds)))

        async def all_stored() -> bool:
            return await count(pool, "SELECT count(*) FROM energy_readings") == 15

        await eventually(all_stored)
        assert store.failed == 1
        assert registry.get_sample_value("ems_ingest_restarts_total") == 1
        # Each sample once, each message audited as accepted (the failed batch never
        # committed, so its redelivery is not a duplicate).
        verdicts = await pool.fetch("SELECT verdict, count(*) AS n FROM raw_events GROUP BY 1")
        assert {r["verdict"]: r["n"] for r in verdicts} == {"accepted": 5}
        await eventually(subscribed)
        assert ingest.healthy
