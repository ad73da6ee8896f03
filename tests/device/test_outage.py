"""Broker outage: samples pile up in SQLite, then replay in order, in batches, none lost."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ems_contract import MAX_BATCH_BYTES, MAX_BATCH_SAMPLES, parse_telemetry
from ems_device.agent import Agent
from tests.device.conftest import agent_settings
from tests.device.fakes import MqttObserver, Received, eventually
from tests.support.mosquitto import MosquittoFactory

TELEMETRY = "ems/dev1/telemetry"


def seqs_of(messages: list[Received], boot: str) -> list[int]:
    out: list[int] = []
    for message in messages:
        verdict = parse_telemetry("dev1", message.payload)
        assert not verdict.rejected, verdict.rejected
        out.extend(s.seq for s in verdict.samples if s.boot == boot)
    return out


def first_occurrences(values: list[int]) -> list[int]:
    seen: set[int] = set()
    return [v for v in values if not (v in seen or seen.add(v))]  # type: ignore[func-returns-value]


def rows_on_disk(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


async def test_outage_buffers_then_replays_everything_in_order(
    tmp_path: Path, mosquitto_factory: MosquittoFactory
) -> None:
    # Broker-side persistence keeps the observer's session across the restart, so what the
    # agent replays before the observer reconnects is queued for it, not lost to the test.
    store = tmp_path / "broker-store"
    store.mkdir()
    broker = mosquitto_factory(
        config_extra=f"persistence true\npersistence_location {store}/\nmax_queued_messages 0\n"
    )
    observer = MqttObserver(broker.port, [TELEMETRY], client_id="observer", clean_session=False)
    settings = agent_settings(tmp_path, broker, device_interval=0.1)
    try:
        async with Agent(settings) as agent:
            await observer.wait_for(
                lambda got: len(seqs_of(got, agent.boot)) >= 5, what="live samples"
            )
            broker.stop()
            await eventually(lambda: not agent.connected, what="agent notices the outage")
            buffered_from = agent.sampler.next_seq
            # Enough to be replayed as batches; counted on disk, not just in memory.
            await eventually(
                lambda: rows_on_disk(settings.db_path) >= 40, what="samples buffered on disk"
            )
            assert agent.sampler.next_seq >= buffered_from + 30
            broker.start()
            await eventually(lambda: agent.connected, what="agent reconnects")
            await eventually(lambda: agent.backlog <= 2, what="backlog replayed")
        total = agent.sampler.next_seq
        messages = await observer.wait_for(
            lambda got: len(set(seqs_of(got, agent.boot))) >= total,
            what=f"all {total} samples at the observer",
        )
    finally:
        observer.close()

    received = seqs_of(messages, agent.boot)
    # Nothing lost, no gap: every seq of this boot arrived, and in order of first arrival.
    assert sorted(set(received)) == list(range(total))
    assert first_occurrences(received) == list(range(total))
    batches = [parse_telemetry("dev1", m.payload) for m in messages]
    replayed = [v for v in batches if v.batch]
    assert replayed, "the backlog should have been replayed as batches"
    for message in messages:
        assert len(message.payload) <= MAX_BATCH_BYTES
    assert all(len(v.samples) <= MAX_BATCH_SAMPLES for v in replayed)
    assert rows_on_disk(settings.db_path) == 0
