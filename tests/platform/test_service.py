"""Ingest.handle without a broker: seeding, judging failures, and the health it reports."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from ems_platform.ingest.deltas import Previous
from ems_platform.ingest.envelope import Envelope, Incoming, Verdict
from ems_platform.ingest.judge import Judge
from ems_platform.ingest.memory_store import MemoryReadingStore
from ems_platform.ingest.metrics import IngestMetrics
from ems_platform.ingest.service import INTERNAL_ERROR, Ingest
from ems_platform.ingest.source import MqttConfig
from tests.platform.payloads import BASE_TS, encode, sample

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
UNUSED_BROKER = MqttConfig("127.0.0.1", 1, "test", "test", None)


def make(store: MemoryReadingStore) -> Ingest:
    return Ingest(
        store,
        UNUSED_BROKER,
        IngestMetrics(CollectorRegistry()),
        batch_rows=100,
        flush_interval=3600,
        retry_cap=0.01,
    )


async def test_first_message_of_a_device_is_seeded_from_the_store() -> None:
    store = MemoryReadingStore()
    ingest = make(store)
    await ingest.handle(Incoming("ems/d1/telemetry", encode(sample(0, energy=10)), NOW))
    await ingest.batcher.flush()
    # A new process over the same store continues the deltas.
    again = make(store)
    await again.handle(Incoming("ems/d1/telemetry", encode(sample(60, energy=10)), NOW))
    await again.batcher.flush()
    rows = sorted((r for r in store.readings.values() if r.phase == "A"), key=lambda r: r.ts)
    assert rows[0].flags == ("first_reading",)
    assert rows[1].flags == () and rows[1].energy_delta_kwh is not None
    assert again.deltas.is_seeded("d1")
    assert isinstance((await store.latest("d1"))["A"], Previous)
    assert ingest.metrics.value("ems_ingest_messages_total", kind="telemetry") == 1


async def test_seeding_waits_for_the_store_and_reports_it_unhealthy() -> None:
    store = MemoryReadingStore()
    store.unavailable = True
    ingest = make(store)
    handling = asyncio.create_task(
        ingest.handle(Incoming("ems/d1/telemetry", encode(sample()), NOW))
    )
    for _ in range(10_000):
        if not ingest.store_healthy:
            break
        await asyncio.sleep(0.001)
    assert not ingest.store_healthy and not handling.done()
    store.unavailable = False
    await asyncio.wait_for(handling, 30)
    assert ingest.store_healthy
    await ingest.batcher.flush()
    assert {key[2] for key in store.readings} == {BASE_TS}


class BrokenJudge(Judge):
    def judge(self, incoming: Incoming) -> Envelope:
        raise RecursionError("maximum recursion depth exceeded")


async def test_a_message_that_breaks_the_judge_is_kept_as_quarantined() -> None:
    store = MemoryReadingStore()
    ingest = make(store)
    ingest.judge = BrokenJudge(ingest.deltas)
    await ingest.handle(Incoming("ems/d1/status", b"[[[[", NOW))
    await ingest.batcher.flush()
    [(envelope, verdict)] = store.events
    assert verdict is Verdict.QUARANTINED
    assert envelope.reason == INTERNAL_ERROR and envelope.device_id == "d1"
    assert envelope.incoming.payload == b"[[[["
