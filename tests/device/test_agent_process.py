"""The agent as a process (``python -m ems_device run``): last will on SIGKILL, clean SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ems_contract import Status, parse_telemetry
from tests.device.fakes import MqttObserver, Received
from tests.support.mosquitto import MosquittoBroker

STATUS = "ems/proc1/status"


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[object]:
    processes: list[subprocess.Popen[bytes]] = []

    def start(broker: MosquittoBroker) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMS_")}
        env.update(
            EMS_DEVICE_ID="proc1",
            EMS_MQTT_HOST=broker.host,
            EMS_MQTT_PORT=str(broker.port),
            EMS_DEVICE_DB=str(tmp_path / "proc1.db"),
            EMS_DEVICE_INTERVAL="0.2",
            EMS_DEVICE_RECONNECT_MAX="1",
        )
        log = (tmp_path / "agent.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "ems_device", "run", "--log-level", "DEBUG"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def statuses(messages: list[Received]) -> list[Status]:
    return [Status.model_validate_json(m.payload) for m in messages if m.topic == STATUS]


async def test_last_will_fires_when_the_agent_dies(
    mosquitto_broker: MosquittoBroker, spawn: object, tmp_path: Path
) -> None:
    observer = MqttObserver(mosquitto_broker.port, ["ems/proc1/#"])
    try:
        process = spawn(mosquitto_broker)  # type: ignore[operator]
        await observer.wait_for(
            lambda got: (
                any(s.state == "online" for s in statuses(got))
                and any(m.topic.endswith("/telemetry") for m in got)
            ),
            what="online status and telemetry from the process",
        )
        process.kill()  # SIGKILL: no goodbye, the socket just dies
        process.wait(timeout=10)
        messages = await observer.wait_for(
            lambda got: statuses(got)[-1].state == "offline", what="the last will"
        )
        will = statuses(messages)[-1]
        assert will.model_dump(exclude_none=True) == {"v": 1, "state": "offline"}
        # And it is retained for whoever looks next.
        late = MqttObserver(mosquitto_broker.port, [STATUS])
        try:
            (retained,) = await late.wait_for(lambda got: bool(got), what="retained will")
            assert retained.retain
            assert Status.model_validate_json(retained.payload).state == "offline"
        finally:
            late.close()
        telemetry = [m for m in messages if m.topic.endswith("/telemetry")]
        assert all(parse_telemetry("proc1", m.payload).samples for m in telemetry)
    finally:
        observer.close()


async def test_sigterm_stops_cleanly_with_a_shutdown_status(
    mosquitto_broker: MosquittoBroker, spawn: object, tmp_path: Path
) -> None:
    observer = MqttObserver(mosquitto_broker.port, [STATUS])
    try:
        process = spawn(mosquitto_broker)  # type: ignore[operator]
        await observer.wait_for(
            lambda got: any(s.state == "online" for s in statuses(got)), what="online status"
        )
        process.send_signal(signal.SIGTERM)
        messages = await observer.wait_for(
            lambda got: statuses(got)[-1].state == "offline", what="offline status"
        )
        assert process.wait(timeout=30) == 0
        final = statuses(messages)[-1]
        assert final.reason == "shutdown" and final.ts is not None
        log = (tmp_path / "agent.log").read_text()
        assert "agent proc1 stopped" in log
    finally:
        observer.close()


def test_module_help_lists_run_and_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ems_device", "--help"], capture_output=True, text=True, check=True
    )
    assert "run" in result.stdout and "EMS_DEVICE_ID" in result.stdout
    result = subprocess.run(
        [sys.executable, "-m", "ems_device", "run", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--interval" in result.stdout and "EMS_DEVICE_RETENTION_DAYS" in result.stdout


def test_invalid_configuration_exits_with_a_message(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMS_")}
    env.update(EMS_DEVICE_ID="bad id!", EMS_DEVICE_DB=str(tmp_path / "x.db"))
    result = subprocess.run(
        [sys.executable, "-m", "ems_device", "run"], capture_output=True, text=True, env=env
    )
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr and "device id" in result.stderr
