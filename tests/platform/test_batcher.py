"""Batching, retry on outage, poison isolation and backpressure (fake store, no timing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from ems_platform.ingest.batcher import LOOKAHEAD, STORE_REJECTED, BatchWriter, split_lanes
from ems_platform.ingest.envelope import Envelope, Incoming, Verdict
from ems_platform.ingest.judge import Judge
from ems_platform.ingest.memory_store import MemoryReadingStore
from ems_platform.ingest.metrics import IngestMetrics
from ems_platform.ingest.store import StoreUnavailableError
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


# Write lanes: a batch committed as several transactions at once, no device in two.


def mixed_batch(devices: int, per_device: int) -> list[Envelope]:
    """Envelopes of several devices, interleaved as they would arrive."""
    by_device = [envelopes(per_device, device=f"dev{d}") for d in range(devices)]
    return [by_device[d][i] for i in range(per_device) for d in range(devices)]


def test_split_lanes_keeps_each_device_in_one_part_and_in_arrival_order() -> None:
    batch = mixed_batch(devices=12, per_device=4)
    stray = Judge().judge(Incoming("ems/not a device/telemetry", b"{}", NOW))
    assert stray.device_id is None
    parts = split_lanes([*batch, stray], 3)
    assert 1 < len(parts) <= 3
    assert sorted(map(id, (env for part in parts for env in part))) == sorted(
        map(id, [*batch, stray])
    )
    lane_of: dict[str | None, int] = {}
    for n, part in enumerate(parts):
        for env in part:
            assert lane_of.setdefault(env.device_id, n) == n, "a device split over two parts"
        order = [batch.index(env) for env in part if env is not stray]
        assert order == sorted(order)
    assert stray in parts[0]
    assert split_lanes(batch, 1) == [batch]


class LaneStore(MemoryReadingStore):
    """Writes each part on its own "connection": parts overlap, and a chosen device's part
    fails (transiently) a given number of times."""

    def __init__(self, failing_device: str | None = None, failures: int = 0) -> None:
        super().__init__()
        self.failing_device = failing_device
        self.failures = failures
        self.in_write = 0
        self.overlapped = False
        self.parts: list[list[str | None]] = []
        self.tries = 0

    async def write(self, batch: Sequence[Envelope]) -> list[int]:
        self.tries += 1
        self.in_write += 1
        try:
            await asyncio.sleep(0)  # the other lane gets to start meanwhile
            self.overlapped = self.overlapped or self.in_write > 1
            devices = {env.device_id for env in batch}
            if self.failing_device in devices and self.failures:
                self.failures -= 1
                raise StoreUnavailableError("this lane's connection is down")
            self.parts.append(sorted(devices, key=str))
            return await super().write(batch)
        finally:
            self.in_write -= 1


async def committed_with_lanes(
    store: LaneStore, batch: list[Envelope], acked: list[object]
) -> BatchWriter:
    writer = BatchWriter(
        store,
        IngestMetrics(CollectorRegistry()),
        max_rows=len(batch),
        flush_interval=LONG,
        retry_cap=0.01,
        on_committed=acked.extend,
        lanes=2,
    )
    await writer.add_many(batch)
    await writer.flush()
    return writer


def with_acks(batch: list[Envelope]) -> list[Envelope]:
    for n, env in enumerate(batch):
        env.incoming.ack = n
    return batch


async def test_lanes_commit_parts_at_once_and_ack_the_batch_once_in_arrival_order() -> None:
    store = LaneStore()
    batch = with_acks(mixed_batch(devices=10, per_device=3))
    acked: list[object] = []
    writer = await committed_with_lanes(store, batch, acked)
    assert len(store.parts) == 2 and store.overlapped
    assert not set(store.parts[0]) & set(store.parts[1])
    assert acked == list(range(len(batch)))
    assert writer.committed_batches == 1
    assert len(store.readings) == len(batch)


async def test_a_failing_lane_is_retried_alone_and_nothing_is_acked_before_it_lands() -> None:
    store = LaneStore(failing_device="dev3", failures=3)
    batch = with_acks(mixed_batch(devices=10, per_device=3))
    acked: list[object] = []
    await committed_with_lanes(store, batch, acked)
    # The healthy lane committed once; the failing one landed on its fourth attempt.
    assert len(store.parts) == 2
    assert store.tries == 2 + 3
    assert acked == list(range(len(batch)))
    assert [verdict for _, verdict in store.events] == [Verdict.ACCEPTED] * len(batch)
    assert len(store.readings) == len(batch)


async def test_poison_in_one_lane_is_quarantined_while_the_other_lane_commits_once() -> None:
    store = LaneStore()
    batch = with_acks(mixed_batch(devices=10, per_device=3))
    bad = batch[4]
    store.poison.add(bad.incoming.topic)
    acked: list[object] = []
    await committed_with_lanes(store, batch, acked)
    assert acked == list(range(len(batch)))
    events: dict[str, list[Verdict]] = {}
    for env, verdict in store.events:
        events.setdefault(env.incoming.topic, []).append(verdict)
    assert events.pop(bad.incoming.topic) == [Verdict.QUARANTINED] * 3
    # Every other message has exactly one audit verdict: none was written twice.
    assert all(verdicts == [Verdict.ACCEPTED] * 3 for verdicts in events.values())


class BuggyLaneStore(MemoryReadingStore):
    """One device's lane hits a bug; the other lane's write would never end by itself."""

    def __init__(self, buggy_device: str) -> None:
        super().__init__()
        self.buggy_device = buggy_device
        self.blocked_lane_cancelled = False

    async def write(self, batch: Sequence[Envelope]) -> list[int]:
        if any(env.device_id == self.buggy_device for env in batch):
            await asyncio.sleep(0)
            raise RuntimeError("a bug in the store")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.blocked_lane_cancelled = True
            raise
        raise AssertionError("unreachable")


async def test_a_bug_in_one_lane_cancels_the_others_and_reaches_the_caller() -> None:
    store = BuggyLaneStore(buggy_device="dev3")
    batch = with_acks(mixed_batch(devices=10, per_device=2))
    acked: list[object] = []
    writer = BatchWriter(
        store,
        IngestMetrics(CollectorRegistry()),
        max_rows=len(batch),
        flush_interval=LONG,
        on_committed=acked.extend,
        lanes=2,
    )
    await writer.add_many(batch)
    with pytest.raises(RuntimeError, match="a bug in the store"):
        await asyncio.wait_for(writer.flush(), 30)
    assert store.blocked_lane_cancelled
    assert acked == [] and writer.committed_batches == 0
