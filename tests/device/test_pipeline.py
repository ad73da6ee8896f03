"""Sampler and publisher logic with a fake link (pure logic; the broker tests cover the wire)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ems_contract import Phase, parse_telemetry
from ems_device.db import DeviceDb
from ems_device.meter.base import MeterError, MeterReading
from ems_device.meter.simulated import SimulatedMeter
from ems_device.outbox import Outbox
from ems_device.publisher import Publisher
from ems_device.sampler import Sampler
from tests.device.fakes import ManualClock


class FakeLink:
    def __init__(self) -> None:
        self.connected = True
        self.sent: list[tuple[int, str, bytes]] = []
        self._mid = 0

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        if not self.connected:
            return None
        self._mid += 1
        self.sent.append((self._mid, topic, payload))
        return self._mid


class FlakyMeter:
    def __init__(self, inner: SimulatedMeter, fail_on: set[int]) -> None:
        self.inner = inner
        self.calls = 0
        self.fail_on = fail_on

    @property
    def phases(self) -> tuple[Phase, ...]:
        return self.inner.phases

    def read(self) -> MeterReading:
        self.calls += 1
        if self.calls in self.fail_on:
            raise MeterError("SPI hiccup")
        return self.inner.read()

    def close(self) -> None:
        pass


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    db = DeviceDb(tmp_path / "p.db")
    yield Outbox(db)
    db.close()


def seqs(payload: bytes) -> list[int]:
    return [s.seq for s in parse_telemetry("dev1", payload).samples]


async def test_sampler_numbers_stored_samples_and_skips_failed_reads(outbox: Outbox) -> None:
    clock = ManualClock()
    meter = FlakyMeter(SimulatedMeter(phases=2, clock=clock), fail_on={2, 5})
    sampler = Sampler(meter, outbox, clock, boot="b007", interval=1.0)
    results = [await sampler.sample_once() for _ in range(6)]
    assert results == [True, False, True, True, False, True]
    stored = [json.loads(r.payload) for r in outbox.rows_after(0)]
    assert [s["seq"] for s in stored] == [0, 1, 2, 3]
    assert {s["boot"] for s in stored} == {"b007"}
    assert set(stored[0]["phases"]) == {"A", "B"}


async def test_sampler_runs_on_its_interval_and_accepts_a_new_one(outbox: Outbox) -> None:
    clock = ManualClock()
    ticks = asyncio.Event()
    sampler = Sampler(SimulatedMeter(clock=clock), outbox, clock, "b", 3600.0, on_sample=ticks.set)
    task = asyncio.create_task(sampler.run())
    try:
        await asyncio.wait_for(ticks.wait(), timeout=10)  # the first tick is immediate
        assert len(outbox) == 1
        sampler.set_interval(0.1)  # without this the next sample is an hour away
        for _ in range(100):
            if len(outbox) >= 3:
                break
            await asyncio.sleep(0.05)
        assert len(outbox) >= 3 and sampler.interval == 0.1
    finally:
        task.cancel()


def test_publisher_sends_live_samples_singly_and_deletes_on_puback(outbox: Outbox) -> None:
    link = FakeLink()
    acked: list[int] = []
    publisher = Publisher(
        outbox, link, "ems/dev1/telemetry", window=2, batch_min=5, on_acked=acked.append
    )
    outbox.append(_sample(0), 0.0)
    publisher.pump()
    assert [seqs(p) for _, _, p in link.sent] == [[0]]
    assert not parse_telemetry("dev1", link.sent[0][2]).batch
    publisher.on_published(link.sent[0][0])
    assert len(outbox) == 0 and acked == [0]
    publisher.on_published(999)  # someone else's mid (status, ack): ignored
    assert acked == [0]


def test_publisher_window_batches_and_link_down(outbox: Outbox) -> None:
    link = FakeLink()
    publisher = Publisher(outbox, link, "t", window=2, batch_min=5, max_batch_bytes=3000)
    for seq in range(30):
        outbox.append(_sample(seq), 0.0)
    link.connected = False
    publisher.pump()
    assert link.sent == []  # nothing handed over while the link is down
    link.connected = True
    publisher.pump()
    # Two batches in flight (the window), consecutive, each within the byte budget.
    assert len(link.sent) == 2
    first, second = (seqs(p) for _, _, p in link.sent)
    assert len(first) >= 5 and first[0] == 0 and second[0] == first[-1] + 1
    assert all(len(p) <= 3000 for _, _, p in link.sent)
    assert publisher.inflight_rows == len(first) + len(second)
    publisher.pump()
    assert len(link.sent) == 2  # window full: wait for a PUBACK
    acked: set[int] = set()
    while len(outbox):
        for mid, _, _ in link.sent:
            if mid not in acked:
                acked.add(mid)
                publisher.on_published(mid)
        publisher.pump()
    everything = [s for _, _, p in link.sent for s in seqs(p)]
    assert everything == list(range(30))
    # Batches only while at least batch_min rows wait; a shorter tail goes out singly.
    for _, _, payload in link.sent:
        verdict = parse_telemetry("dev1", payload)
        assert len(verdict.samples) >= 5 if verdict.batch else len(verdict.samples) == 1


def _sample(seq: int) -> bytes:
    reading = {
        "voltage_rms": 230.0,
        "current_rms": 1.0,
        "power_watt": 200.0,
        "power_var": 10.0,
        "power_va": 230.0,
        "power_factor": 0.9,
        "voltage_thd": 1.0,
        "current_thd": 2.0,
        "energy_kwh": 1.0,
    }
    body = {
        "v": 1,
        "ts": 1_790_000_000_000 + seq,
        "seq": seq,
        "boot": "b",
        "phases": {"A": reading},
    }
    return json.dumps(body).encode()
