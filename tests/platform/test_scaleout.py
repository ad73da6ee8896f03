"""Two ingest workers share one load through ``$share/<group>/`` on Mosquitto."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from ems_platform.core.db import Pool
from ems_platform.core.settings import PlatformSettings
from ems_platform.ingest.metrics import IngestMetrics
from ems_platform.ingest.service import build_ingest
from ems_platform.ingest.source import TOPIC_FILTERS, topic_filters
from tests.platform.loadgen import Fleet, assert_exactly_once, eventually
from tests.support.mosquitto import MosquittoFactory

BROKER_CONFIG = "max_inflight_messages 1000\nmax_queued_messages 100000"
DSN = "postgresql://ems@127.0.0.1/ems"


def worker_settings(host: str, port: int) -> PlatformSettings:
    return PlatformSettings(
        database_url=DSN,
        mqtt_host=host,
        mqtt_port=port,
        ingest_client_id=f"ingest-{uuid.uuid4().hex[:8]}",
        ingest_shared_group="ems-ingest",
        ingest_flush_ms=50,
        reconnect_max_s=1.0,
    )


async def test_two_shared_workers_split_the_load_and_store_every_sample_once(
    pool: Pool, mosquitto_factory: MosquittoFactory
) -> None:
    broker = mosquitto_factory(config_extra=BROKER_CONFIG)
    metrics = [IngestMetrics(CollectorRegistry()) for _ in range(2)]
    fleet = Fleet(broker.host, broker.port, [f"share-{n}" for n in range(4)], period=0.01)
    async with (
        build_ingest(pool, worker_settings(broker.host, broker.port), metrics[0]) as one,
        build_ingest(pool, worker_settings(broker.host, broker.port), metrics[1]) as two,
    ):

        async def both_subscribed() -> bool:
            return one.connected and two.connected

        await eventually(both_subscribed)
        fleet.start()

        async def enough() -> bool:
            return fleet.total >= 800

        await eventually(enough)
        await fleet.stop()
        await eventually(lambda: fleet.all_stored(pool))
    await assert_exactly_once(pool, fleet)
    stored = [m.value("ems_ingest_samples_stored_total") for m in metrics]
    assert all(n > 0 for n in stored)
    assert sum(stored) == fleet.total * 3


def test_shared_group_prefixes_every_filter() -> None:
    assert topic_filters(None) == TOPIC_FILTERS
    assert topic_filters("g1") == tuple(f"$share/g1/{t}" for t in TOPIC_FILTERS)


def test_amqtt_refuses_a_shared_group() -> None:
    with pytest.raises(ValidationError, match="amqtt"):
        PlatformSettings(database_url=DSN, broker="amqtt", ingest_shared_group="g1")
    with pytest.raises(ValidationError):
        PlatformSettings(database_url=DSN, ingest_shared_group="bad/group")
