"""The agent's configuration: ``EMS_*`` environment variables (one settings class)."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ems_contract import check_device_id


class DeviceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMS_", extra="ignore")

    device_id: str = Field(description="Device id; also the MQTT client id and username")
    device_token: SecretStr | None = Field(
        default=None, description="Device token, sent as the MQTT password"
    )
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_keepalive: int = Field(default=30, ge=5, le=3600)
    mqtt_tls: bool = False
    mqtt_ca_file: Path | None = None

    device_meter: Literal["simulated", "ade9000"] = "simulated"
    device_interval: float = Field(default=1.0, ge=0.1, le=3600)
    device_phases: int = Field(default=3, ge=1, le=3)
    device_seed: int | None = Field(
        default=None, description="Seed of the simulated meter; default: derived from the id"
    )

    data_dir: Path | None = None
    device_db: Path | None = None
    device_retention_days: float = Field(default=3.0, gt=0)
    device_outbox_max_rows: int = Field(
        default=400_000, ge=1000, description="Hard cap on buffered samples (disk bound)"
    )
    device_max_inflight: int = Field(default=8, ge=1, le=100)
    device_batch_min: int = Field(
        default=10, ge=2, description="Replay as batches once this many samples wait"
    )
    device_reconnect_min: float = Field(default=0.5, gt=0)
    device_reconnect_max: float = Field(default=30.0, gt=0)

    device_spi_bus: int = Field(default=0, ge=0)
    device_spi_device: int = Field(default=0, ge=0)
    device_spi_speed_hz: int = Field(default=1_000_000, ge=10_000, le=20_000_000)
    device_line_hz: Literal[50, 60] = 50
    device_voltage_gain: Literal[1, 2, 4] = 1
    device_current_gain: Literal[1, 2, 4] = 1
    device_voltage_divider: float = Field(default=1001.0, gt=0)
    device_ct_ratio: float = Field(default=2500.0, gt=0)
    device_burden_ohms: float = Field(default=10.2, gt=0)

    device_relay: Literal["memory", "sysfs"] = "memory"
    device_relay_pins: str = "A:17,B:27,C:22"
    device_relay_active_low: bool = False
    device_gpio_root: Path = Path("/sys/class/gpio")

    @field_validator("device_id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return check_device_id(value)

    @model_validator(mode="after")
    def _backoff_order(self) -> DeviceSettings:
        if self.device_reconnect_min > self.device_reconnect_max:
            raise ValueError("EMS_DEVICE_RECONNECT_MIN must not exceed EMS_DEVICE_RECONNECT_MAX")
        return self

    @property
    def db_path(self) -> Path:
        """EMS_DEVICE_DB, else ``<EMS_DATA_DIR>/<id>.db``, else ``~/.local/share/ems-device``."""
        if self.device_db is not None:
            return self.device_db
        base = self.data_dir or Path.home() / ".local" / "share" / "ems-device"
        return base / f"{self.device_id}.db"

    @property
    def simulation_seed(self) -> int:
        """A stable seed per device, so simulated fleets do not all show the same load."""
        if self.device_seed is not None:
            return self.device_seed
        return zlib.crc32(self.device_id.encode())

    @property
    def retention_s(self) -> float:
        return self.device_retention_days * 86400.0
