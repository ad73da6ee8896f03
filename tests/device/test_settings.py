"""``EMS_*`` settings of the agent, the backoff, and the sampler's seq numbering."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from ems_device.settings import DeviceSettings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("EMS_"):
            monkeypatch.delenv(key)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EMS_DEVICE_ID", "pi-kitchen")
    monkeypatch.setenv("EMS_DEVICE_TOKEN", "ems_secret")
    monkeypatch.setenv("EMS_MQTT_HOST", "broker.lan")
    monkeypatch.setenv("EMS_MQTT_PORT", "8883")
    monkeypatch.setenv("EMS_DEVICE_METER", "ade9000")
    monkeypatch.setenv("EMS_DEVICE_INTERVAL", "2.5")
    monkeypatch.setenv("EMS_DEVICE_RETENTION_DAYS", "5")
    monkeypatch.setenv("EMS_DEVICE_CT_RATIO", "1000")
    monkeypatch.setenv("EMS_DATA_DIR", str(tmp_path))
    settings = DeviceSettings()
    assert settings.device_id == "pi-kitchen"
    assert settings.device_token is not None
    assert settings.device_token.get_secret_value() == "ems_secret"
    assert "ems_secret" not in repr(settings)
    assert (settings.mqtt_host, settings.mqtt_port) == ("broker.lan", 8883)
    assert settings.device_meter == "ade9000" and settings.device_interval == 2.5
    assert settings.retention_s == 5 * 86400
    assert settings.device_ct_ratio == 1000
    assert settings.db_path == tmp_path / "pi-kitchen.db"


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMS_DEVICE_ID", "dev1")
    settings = DeviceSettings()
    assert (settings.mqtt_host, settings.mqtt_port) == ("127.0.0.1", 1883)
    assert settings.device_meter == "simulated" and settings.device_interval == 1.0
    assert settings.device_retention_days == 3
    assert settings.db_path == Path.home() / ".local/share/ems-device/dev1.db"
    monkeypatch.setenv("EMS_DEVICE_DB", "/var/lib/ems/x.db")
    assert DeviceSettings().db_path == Path("/var/lib/ems/x.db")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("EMS_DEVICE_ID", "bad/id"),
        ("EMS_DEVICE_INTERVAL", "0"),
        ("EMS_DEVICE_METER", "psychic"),
        ("EMS_DEVICE_VOLTAGE_GAIN", "3"),
        ("EMS_DEVICE_RECONNECT_MIN", "60"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    monkeypatch.setenv("EMS_DEVICE_ID", "dev1")
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        DeviceSettings()


def test_simulation_seed_differs_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMS_DEVICE_ID", "sim-001")
    first = DeviceSettings().simulation_seed
    monkeypatch.setenv("EMS_DEVICE_ID", "sim-002")
    assert DeviceSettings().simulation_seed != first
    monkeypatch.setenv("EMS_DEVICE_SEED", "42")
    assert DeviceSettings().simulation_seed == 42
