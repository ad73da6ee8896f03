"""Settings for agents under test: fast sampling and quick reconnects against a test broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ems_device.settings import DeviceSettings
from tests.support.mosquitto import MosquittoBroker


def agent_settings(
    tmp_path: Path, broker: MosquittoBroker, device_id: str = "dev1", **overrides: Any
) -> DeviceSettings:
    values: dict[str, Any] = {
        "device_id": device_id,
        "mqtt_host": broker.host,
        "mqtt_port": broker.port,
        "device_db": tmp_path / f"{device_id}.db",
        "device_interval": 0.1,
        "device_reconnect_min": 0.1,
        "device_reconnect_max": 0.5,
    }
    values.update(overrides)
    return DeviceSettings(**values)
