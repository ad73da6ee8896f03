"""Settings of the embedded broker, read from EMS_* environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ems_access.ratelimit import DEFAULT_LIMIT, DEFAULT_WINDOW_S

MIB = 1024 * 1024
# MQTT's remaining-length field cannot describe a larger packet.
MQTT_PACKET_LIMIT = 268_435_455


class BaseBrokerSettings(BaseSettings):
    """What both brokers (built-in and Mosquitto) read: EMS_DATABASE_URL is required,
    everything else has a working default."""

    model_config = SettingsConfigDict(env_prefix="EMS_", extra="ignore")

    database_url: SecretStr = Field(
        description="PostgreSQL URL of the EMS database (tokens and ACL rules live there)"
    )
    mqtt_host: str = Field("127.0.0.1", description="address the MQTT listener binds to")
    mqtt_port: int = Field(1883, ge=0, le=65535, description="MQTT TCP port (0: any free port)")
    mqtt_max_packet: int = Field(
        MIB, ge=1024, le=MQTT_PACKET_LIMIT, description="largest MQTT packet accepted, bytes"
    )
    mqtt_max_queued: int = Field(
        100_000,
        ge=1,
        description="QoS 1 messages queued per session beyond those in flight (the ingest's "
        "backlog while the database is down); past it the oldest are dropped and logged",
    )
    mqtt_session_expiry: int = Field(
        86_400, ge=1, description="seconds an offline persistent session is kept"
    )
    auth_fail_limit: int = Field(
        DEFAULT_LIMIT,
        ge=0,
        description="failed MQTT logins per client address within the window (0: no limit)",
    )
    auth_fail_window: float = Field(
        DEFAULT_WINDOW_S, gt=0, description="seconds over which failed logins are counted"
    )


class BrokerSettings(BaseBrokerSettings):
    """The built-in broker's settings. EMS_DATABASE_URL is required; everything else has a
    working default."""

    mqtt_connect_timeout: float = Field(
        10.0, gt=0, description="seconds a new connection may take to send its CONNECT"
    )
    access_cache_ttl: float = Field(
        60.0, gt=0, description="seconds a token lookup is trusted without a NOTIFY"
    )
    db_pool_size: int = Field(4, ge=2, description="database connections (one listens)")
