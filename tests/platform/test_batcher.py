"""Batching, retry on outage, poison isolation and backpressure (fake store, no timing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from ems_platform.ingest.batcher import LOOKAHEAD, STORE_REJECTED, BatchWriter
from ems_platform.ingest.envelope import Envelope, Incoming, Verdict
from ems_platform.ingest.judge import Judge
from ems_platform.ingest.memory_store import MemoryReadingStore
from ems_platform.ingest.metrics import IngestMetrics
from tests.platform.payloads import encode, sample

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
LONG = 3600.0  # a flush interval no test waits for


def envelopes(n: int, *, device: str = "d1", phases: tuple[str, ...] = ("A",)) -> list[Envelope]:
    judge = Judge()
    topic = f"ems/{device}/telemetry"
    return [judge.judge(Incoming(topic, encode(sample(i, phases=phases)), NOW)) for i in range(n)]


async def until(predicate: Callable[[], bool]) -> None:
    """Bounded polling: let the loop run until the condition holds."""
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


@asynccontextmanager
async def running(
    store: MemoryReadingStore, *, max_rows: int, interval: float = LONG
) -> AsyncIterator[BatchWriter]:
    writer = BatchWriter(
        store,
        IngestMetrics(CollectorRegistry()),
        max_rows=max_rows,
        flush_interval=interval,
        retry_cap=0.01,
    )
    task = asyncio.create_task(writer.run())
    try:
        yield writer
    finally:
        await writer.close()
        await asyncio.wait_for(task, 30)


async def test_flushes_when_a_batch_is_full() -> None:
    store = MemoryReadingStore()
    async with running(store, max_rows=3) as writer:
        for env in envelopes(3):
            await writer.add(env)
        await until(lambda: store.commits == 1)
        assert len(store.readings) == 3


async def test_flushes_a_partial_batch_after_the_interval() -> None:
    store = MemoryReadingStore()
    async with running(store, max_rows=1000, interval=0.01) as writer:
        await writer.add(envelopes(1)[0])
        await until(lambda: store.commits == 1)


async def test_close_commits_what_is_pending() -> None:
    store = MemoryReadingStore()
    async with running(store, max_rows=1000) as writer:
        for env in envelopes(5):
            await writer.add(env)
    assert len(store.readings) == 5


async def test_outage_keeps_the_batch_and_retries_until_it_lands() -> None:
    store = MemoryReadingStore()
    store.unavailable = True
    async with running(store, max_rows=2) as writer:
        for env in envelopes(2):
            await writer.add(env)
        await until(lambda: store.attempts >= 3)
        assert not writer.healthy
        store.unavailable = False
        await until(lambda: store.commits == 1)
        assert writer.healthy
    assert len(store.readings) == 2


async def test_full_batches_push_back_on_the_producer() -> None:
    store = MemoryReadingStore()
    store.unavailable = True
    held = 2 * (1 + LOOKAHEAD)  # one batch in the (failing) commit, LOOKAHEAD full behind it
    async with running(store, max_rows=2) as writer:
        items = envelopes(held + 2)
        for env in items[:2]:
            await writer.add(env)
        await until(lambda: store.attempts >= 1)
        for env in items[2:held]:
            await writer.add(env)
        blocked = asyncio.create_task(writer.add(items[held]))
        for _ in range(50):
            await asyncio.sleep(0)
        assert not blocked.done(), "add must wait while the writer is backed up"
        store.unavailable = False
        await asyncio.wait_for(blocked, 30)
        await writer.add(items[held + 1])
    assert len(store.readings) == held + 2


async def test_poison_message_is_quarantined_and_the_rest_stored() -> None:
    store = MemoryReadingStore()
    good = envelopes(3, device="good")
    bad = envelopes(1, device="bad")[0]
    store.poison.add(bad.incoming.topic)
    async with running(store, max_rows=4) as writer:
        for env in [good[0], bad, *good[1:]]:
            await writer.add(env)
    assert len(store.readings) == 3
    verdicts = {env.incoming.topic: (verdict, env.reason) for env, verdict in store.events}
    assert verdicts[bad.incoming.topic] == (Verdict.QUARANTINED, STORE_REJECTED)
    assert verdicts[good[0].incoming.topic][0] is Verdict.ACCEPTED


class RecordingStore(MemoryReadingStore):
    """The in-memory store, noting the size of every batch it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    async def write(self, batch: Sequence[Envelope]) -> list[int]:
        self.sizes.append(len(batch))
        return await super().write(batch)


async def test_a_backlog_behind_a_commit_goes_out_in_batches_of_at_most_max_rows() -> None:
    store = RecordingStore()
    store.unavailable = True
    items = envelopes(2 + 2 * LOOKAHEAD)
    async with running(store, max_rows=2) as writer:
        for env in items[:2]:
            await writer.add(env)
        await until(lambda: store.attempts >= 1)
        for env in items[2:]:  # LOOKAHEAD full batches queue up behind the failing one
            await writer.add(env)
        store.unavailable = False
        await until(lambda: len(store.readings) == len(items))
    committed = [size for size in store.sizes if size]
    assert committed[-LOOKAHEAD:] == [2] * LOOKAHEAD
    assert max(store.sizes) == 2
    # In arrival order: each sample's seq is its index.
    assert [row.seq for row in sorted(store.readings.values(), key=lambda r: r.ts)] == list(
        range(len(items))
    )


async def test_flush_commits_everything_pending() -> None:
    store = RecordingStore()
    writer = BatchWriter(store, IngestMetrics(CollectorRegistry()), max_rows=2, flush_interval=LONG)
    for env in envelopes(2 * LOOKAHEAD):  # as much as may wait with no commit running
        await writer.add(env)
    await writer.flush()
    assert store.sizes == [2] * LOOKAHEAD
