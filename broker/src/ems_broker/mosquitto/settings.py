"""Settings of ``ems broker --mosquitto``, read from EMS_* environment variables."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from ems_access.ratelimit import DEFAULT_WINDOW_S
from ems_broker.settings import BaseBrokerSettings

MOSQUITTO_BIN = Path("/usr/sbin/mosquitto")


def _default_data_dir() -> Path:
    # Same default as `ems up` (README's configuration table).
    if os.geteuid() == 0:
        return Path("/var/lib/ems")
    return Path.home() / ".local" / "share" / "ems"


def _default_plugin_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ems" / "mosquitto-plugin"


class MosquittoSettings(BaseBrokerSettings):
    """EMS_DATABASE_URL is required; everything else has a working default.

    ``mqtt_max_queued`` is Mosquitto's max_queued_messages (its own default of 1000 drops
    messages a slow subscriber has not read yet, after the publisher got its PUBACK).
    """

    mqtt_max_keepalive: int = Field(
        65535, ge=10, le=65535, description="largest keepalive a client may ask for, seconds"
    )
    mqtt_max_inflight: int = Field(
        50_000,
        ge=1,
        le=65535,
        description="QoS 1 messages sent to a client and not yet acknowledged (Mosquitto's "
        "max_inflight_messages, default 20). The platform acknowledges only after its "
        "database commit and holds up to three batches, so this caps how much it can carry: "
        "keep it near three times the messages one EMS_INGEST_BATCH_ROWS batch holds",
    )
    # Stricter bounds than the built-in broker's.
    mqtt_session_expiry: int = Field(
        86_400, ge=3600, description="seconds an offline persistent session is kept"
    )
    auth_fail_window: float = Field(
        DEFAULT_WINDOW_S, ge=1, description="seconds over which failed logins are counted"
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

    @property
    def state_dir(self) -> Path:
        return self.mosquitto_dir or self.data_dir / "mosquitto"
