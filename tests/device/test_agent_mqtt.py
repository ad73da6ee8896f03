"""The agent against a real Mosquitto: telemetry, retained status, commands, clean stop."""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ems_contract import Ack, Status, parse_telemetry
from ems_device import AGENT_NAME
from ems_device.agent import Agent
from ems_device.db import DeviceDb
from ems_device.outbox import Outbox
from ems_device.relay import MemoryRelay
from tests.device.conftest import agent_settings
from tests.device.fakes import MqttObserver, Received, eventually
from tests.support.mosquitto import MosquittoBroker

TELEMETRY = "ems/dev1/telemetry"
STATUS = "ems/dev1/status"
CMD = "ems/dev1/cmd"
ACK = "ems/dev1/cmd/ack"


def seqs(messages: list[Received]) -> list[int]:
    out: list[int] = []
    for message in messages:
        if message.topic == TELEMETRY:
            verdict = parse_telemetry("dev1", message.payload)
            assert not verdict.rejected, verdict.rejected
            out.extend(sample.seq for sample in verdict.samples)
    return out


async def retained_status(broker: MosquittoBroker) -> Status:
    observer = MqttObserver(broker.port, [STATUS])
    try:
        (message,) = await observer.wait_for(lambda got: bool(got), what="retained status")
        assert message.retain and message.qos == 1
        return Status.model_validate_json(message.payload)
    finally:
        observer.close()


class Commander:
    """Publishes commands the way the platform does (QoS 1, not retained)."""

    def __init__(self, port: int) -> None:
        self.client = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, body: dict[str, Any] | bytes) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.client.publish(CMD, raw, qos=1).wait_for_publish(timeout=10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def command(name: str, args: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"v": 1, "id": str(uuid.uuid4()), "name": name, "args": args, **extra}


def acks(observer: MqttObserver) -> list[Ack]:
    return [Ack.model_validate_json(m.payload) for m in observer.received(ACK)]


async def test_samples_status_and_clean_stop(
    tmp_path: Path, mosquitto_broker: MosquittoBroker
) -> None:
    observer = MqttObserver(mosquitto_broker.port, ["ems/dev1/#"])
    try:
        async with Agent(agent_settings(tmp_path, mosquitto_broker)) as agent:
            messages = await observer.wait_for(lambda got: len(seqs(got)) >= 10, what="ten samples")
            telemetry = [m for m in messages if m.topic == TELEMETRY]
            assert all(m.qos == 1 and not m.retain for m in telemetry)
            for message in telemetry:
                verdict = parse_telemetry("dev1", message.payload)
                assert not verdict.batch  # live samples go out one by one
                (sample,) = verdict.samples
                assert sample.boot == agent.boot
                assert set(sample.phases) == {"A", "B", "C"}
            got = seqs(messages)
            assert got == list(range(len(got)))

            status = await retained_status(mosquitto_broker)
            assert status.state == "online"
            assert status.boot == agent.boot and len(agent.boot) == 8
            assert status.agent == AGENT_NAME
            assert status.relays == {"A": True, "B": True, "C": True}
            assert status.backlog is not None and status.interval == 0.1
            # Acknowledged rows leave the outbox.
            await eventually(lambda: agent.backlog <= 3, what="outbox drained")
        status = await retained_status(mosquitto_broker)
        assert status.state == "offline" and status.reason == "shutdown"
        assert status.ts is not None
    finally:
        observer.close()


async def test_commands_over_mqtt(tmp_path: Path, mosquitto_broker: MosquittoBroker) -> None:
    relay = MemoryRelay(("A", "B", "C"))
    observer = MqttObserver(mosquitto_broker.port, [ACK, STATUS])
    commander = Commander(mosquitto_broker.port)
    settings = agent_settings(tmp_path, mosquitto_broker, device_interval=0.5)
    try:
        async with Agent(settings, relay=relay) as agent:
            await eventually(lambda: agent.connected, what="agent connected")
            await observer.wait_for(lambda got: len(got) >= 1, what="online status")

            toggle = command("set_relay", {"phase": "B", "on": False})
            commander.send(toggle)
            await observer.wait_for(lambda got: len(acks(observer)) == 1, what="first ack")
            first = acks(observer)[0]
            assert str(first.id) == toggle["id"] and first.status == "ok"
            assert relay.states() == {"A": True, "B": False, "C": True}
            await observer.wait_for(
                lambda got: any(
                    Status.model_validate_json(m.payload).relays == relay.states()
                    for m in got
                    if m.topic == STATUS
                ),
                what="status republished with the new relay state",
            )

            # The platform redelivers the same command: acked again, not executed again.
            relay.set("B", True)
            commander.send(toggle)
            await observer.wait_for(lambda got: len(acks(observer)) == 2, what="re-ack")
            assert acks(observer)[1] == first
            assert relay.history == [("B", False), ("B", True)]

            expired = command(
                "set_relay", {"phase": "A", "on": False}, expires="2020-01-01T00:00:00Z"
            )
            commander.send(expired)
            await observer.wait_for(lambda got: len(acks(observer)) == 3, what="expired ack")
            assert acks(observer)[2].status == "expired"
            assert relay.states()["A"] is True

            commander.send(b"\x00 garbage without an id")
            bogus = command("self_destruct", {})
            commander.send(bogus)
            await observer.wait_for(lambda got: len(acks(observer)) == 4, what="rejected ack")
            rejected = acks(observer)[3]
            assert str(rejected.id) == bogus["id"] and rejected.status == "rejected"
            assert rejected.error

            ping = command("ping", {})
            commander.send(ping)
            await observer.wait_for(lambda got: len(acks(observer)) == 5, what="ping ack")
            pong = acks(observer)[4]
            assert pong.status == "ok" and pong.result is not None
            assert pong.result["boot"] == agent.boot

            commander.send(command("set_interval", {"seconds": 0.25}))
            await observer.wait_for(lambda got: len(acks(observer)) == 6, what="interval ack")
            assert agent.interval == 0.25
    finally:
        commander.close()
        observer.close()


async def test_relay_state_survives_an_agent_restart(
    tmp_path: Path, mosquitto_broker: MosquittoBroker
) -> None:
    observer = MqttObserver(mosquitto_broker.port, [ACK])
    commander = Commander(mosquitto_broker.port)
    settings = agent_settings(tmp_path, mosquitto_broker)
    try:
        async with Agent(settings, relay=MemoryRelay()) as agent:
            await eventually(lambda: agent.connected, what="agent connected")
            commander.send(command("set_relay", {"phase": "C", "on": False}))
            await observer.wait_for(lambda got: len(got) == 1, what="ack")
        relay = MemoryRelay()
        async with Agent(settings, relay=relay):
            assert relay.states() == {"A": True, "B": True, "C": False}
    finally:
        commander.close()
        observer.close()


async def test_old_backlog_is_pruned_and_the_rest_replayed(
    tmp_path: Path, mosquitto_broker: MosquittoBroker, caplog: pytest.LogCaptureFixture
) -> None:
    settings = agent_settings(tmp_path, mosquitto_broker)
    db = DeviceDb(settings.db_path)
    outbox = Outbox(db)
    now = time.time()

    for seq in range(40):
        outbox.append(_sample_payload(seq, now - 4 * 86400), now - 4 * 86400)  # beyond three days
    for seq in range(40, 60):
        outbox.append(_sample_payload(seq, now - 86400), now - 86400)
    db.close()

    observer = MqttObserver(mosquitto_broker.port, [TELEMETRY])
    try:
        with caplog.at_level(logging.WARNING, logger="ems_device.outbox"):
            async with Agent(settings) as agent:
                await observer.wait_for(
                    lambda got: sum(1 for s in _samples(got) if s.boot == "oldboot") >= 20,
                    what="the surviving backlog",
                )
                await observer.wait_for(
                    lambda got: any(s.boot == agent.boot for s in _samples(got)),
                    what="live samples",
                )
        old = [s.seq for s in _samples(observer.received()) if s.boot == "oldboot"]
        assert sorted(set(old)) == list(range(40, 60))
        assert "pruned 40 unsent samples older than 3.0 days" in caplog.text
    finally:
        observer.close()


def _samples(messages: list[Received]) -> list[Any]:
    out = []
    for message in messages:
        out.extend(parse_telemetry("dev1", message.payload).samples)
    return out


async def test_a_replay_ack_during_the_goodbye_leaves_offline_retained(
    tmp_path: Path, mosquitto_broker: MosquittoBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while the backlog replays: the last replay PUBACK lands while the offline status
    is being sent. Its "backlog drained" republish used to put a retained online status behind
    the offline one, and the clean DISCONNECT then dropped the will: online forever."""
    settings = agent_settings(tmp_path, mosquitto_broker, device_interval=3600.0)
    db = DeviceDb(settings.db_path)
    outbox = Outbox(db)
    now = time.time()
    for seq in range(3):
        outbox.append(_sample_payload(seq, now), now)
    db.close()

    observer = MqttObserver(mosquitto_broker.port, [STATUS])
    agent = Agent(settings)
    await agent.start()
    try:
        # Hold every PUBACK back from the agent until the offline status is handed to paho.
        held: list[int] = []
        deliver = agent.published
        monkeypatch.setattr(agent, "published", held.append)
        publish = agent.link.publish

        def publish_then_release(
            topic: str, payload: bytes, qos: int = 1, retain: bool = False
        ) -> int | None:
            mid = publish(topic, payload, qos=qos, retain=retain)
            if topic == STATUS and Status.model_validate_json(payload).state == "offline":
                monkeypatch.setattr(agent, "published", deliver)
                for late in held:
                    deliver(late)
            return mid

        monkeypatch.setattr(agent.link, "publish", publish_then_release)
        await observer.wait_for(
            lambda got: any(Status.model_validate_json(m.payload).backlog for m in got),
            what="online status with a backlog",
        )
        await eventually(
            lambda: agent.backlog > 0 and agent.publisher.inflight_rows == agent.backlog,
            what="the whole backlog in flight",
        )
    finally:
        await agent.stop()
        observer.close()
    assert held, "no PUBACK was held back"
    status = await retained_status(mosquitto_broker)
    assert status.state == "offline" and status.reason == "shutdown"


def _sample_payload(seq: int, ts: float) -> bytes:
    reading = {
        "voltage_rms": 230.0,
        "current_rms": 1.0,
        "power_watt": 220.0,
        "power_var": 20.0,
        "power_va": 230.0,
        "power_factor": 0.95,
        "voltage_thd": 1.0,
        "current_thd": 3.0,
        "energy_kwh": 10.0,
    }
    body = {"v": 1, "ts": int(ts * 1000), "seq": seq, "boot": "oldboot", "phases": {"A": reading}}
    return json.dumps(body).encode()
