"""Ingest.handle without a broker: seeding, judging failures, and the health it reports."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from ems_platform.ingest.envelope import Envelope, Incoming, Verdict
from ems_platform.ingest.judge import Judge
from ems_platform.ingest.memory_store import MemoryReadingStore
from ems_platform.ingest.metrics import IngestMetrics
from ems_platform.ingest.service import INTERNAL_ERROR, Ingest
from ems_platform.ingest.source import MqttConfig
from tests.platform.payloads import encode, sample

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


async def test_a_new_process_continues_the_deltas_from_the_store() -> None:
    store = MemoryReadingStore()
    ingest = make(store)
    await ingest.handle(Incoming("ems/d1/telemetry", encode(sample(0, energy=10)), NOW))
    await ingest.batcher.flush()
    again = make(store)
    await again.handle(Incoming("ems/d1/telemetry", encode(sample(60, energy=10, seq=1)), NOW))
    await again.batcher.flush()
    rows = sorted((r for r in store.readings.values() if r.phase == "A"), key=lambda r: r.ts)
    assert rows[0].flags == ("first_reading",)
    assert rows[1].flags == () and rows[1].energy_delta_kwh == pytest.approx(0.6)
    assert ingest.metrics.value("ems_ingest_messages_total", kind="telemetry") == 1


class BrokenJudge(Judge):
    def judge(self, incoming: Incoming) -> Envelope:
        raise RecursionError("maximum recursion depth exceeded")


async def test_a_message_that_breaks_the_judge_is_kept_as_quarantined() -> None:
    store = MemoryReadingStore()
    ingest = make(store)
    ingest.judge = BrokenJudge()
    await ingest.handle(Incoming("ems/d1/status", b"[[[[", NOW))
    await ingest.batcher.flush()
    [(envelope, verdict)] = store.events
    assert verdict is Verdict.QUARANTINED
    assert envelope.reason == INTERNAL_ERROR and envelope.device_id == "d1"
    assert envelope.incoming.payload == b"[[[["
