"""Settings of ``ems broker --mosquitto``, read from EMS_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ems_broker.settings import MIB, MQTT_PACKET_LIMIT

MOSQUITTO_BIN = Path("/usr/sbin/mosquitto")


def _default_data_dir() -> Path:
    # Same default as `ems up` (README's configuration table).
    if os.geteuid() == 0:
        return Path("/var/lib/ems")
    return Path.home() / ".local" / "share" / "ems"


def _default_plugin_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ems" / "mosquitto-plugin"


class MosquittoSettings(BaseSettings):
    """EMS_DATABASE_URL is required; everything else has a working default."""

    model_config = SettingsConfigDict(env_prefix="EMS_", extra="ignore")

    database_url: SecretStr = Field(
        description="PostgreSQL URL of the EMS database (tokens and ACL rules live there)"
    )
    mqtt_host: str = Field("127.0.0.1", description="address the MQTT listener binds to")
    mqtt_port: int = Field(1883, ge=0, le=65535, description="MQTT TCP port (0: a free port)")
    mqtt_max_packet: int = Field(
        MIB, ge=1024, le=MQTT_PACKET_LIMIT, description="largest MQTT packet accepted, bytes"
    )
    mqtt_max_keepalive: int = Field(
        65535, ge=10, le=65535, description="largest keepalive a client may ask for, seconds"
    )
    mqtt_max_queued: int = Field(
        100_000,
        ge=1,
        description="QoS 1 messages queued per client beyond those in flight (Mosquitto's "
        "max_queued_messages; its default of 1000 drops messages a slow subscriber has not "
        "read yet, after the publisher got its PUBACK)",
    )
    mqtt_max_inflight: int = Field(
        1000,
        ge=1,
        le=65535,
        description="QoS 1 messages sent to a client and not yet acknowledged (Mosquitto's "
        "max_inflight_messages, default 20). The platform acknowledges only after its "
        "database commit, so this caps how much one commit can carry: keep it at least twice "
        "EMS_INGEST_BATCH_ROWS",
    )
    mqtt_session_expiry: int = Field(
        86_400, ge=3600, description="seconds an offline persistent session is kept"
    )
    data_dir: Path = Field(default_factory=_default_data_dir, description="EMS state directory")
    mosquitto_dir: Path | None = Field(
        None,
        description="Mosquitto's config, access snapshot and persistence (default: "
        "EMS_DATA_DIR/mosquitto)",
    )
    mosquitto_bin: Path = Field(MOSQUITTO_BIN, description="the mosquitto executable")
    mosquitto_plugin_cache: Path = Field(
        default_factory=_default_plugin_cache,
        description="where the compiled EMS auth plugin is kept (keyed by its source hash)",
    )
    access_refresh: float = Field(
        30.0, gt=0, description="seconds between full re-exports of the access snapshot"
    )
    auth_fail_limit: int = Field(
        10, ge=0, description="failed MQTT logins per address and window (0: no limit)"
    )
    auth_fail_window: float = Field(60.0, ge=1, description="window of that limit, seconds")

    @property
    def state_dir(self) -> Path:
        return self.mosquitto_dir or self.data_dir / "mosquitto"
