"""The platform's one settings class, read from ``EMS_*`` environment variables."""

from __future__ import annotations

from ipaddress import ip_network
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ems_access.tokens import MIN_TOKEN_LENGTH, is_strong_token


class PlatformSettings(BaseSettings):
    """``ems platform``: the REST API and the MQTT ingest, usually in one process."""

    model_config = SettingsConfigDict(env_prefix="EMS_", extra="ignore")

    database_url: SecretStr = Field(
        description="PostgreSQL DSN of the migrated TimescaleDB database"
    )
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    service_token: SecretStr | None = Field(
        default=None,
        description="password of the ingest's MQTT login; installed as a 'service' token",
    )
    admin_token: SecretStr | None = Field(
        default=None, description="installed at startup as an 'admin' token when set"
    )
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)

    ingest_enabled: bool = True
    ingest_client_id: str = "ems-platform-ingest"
    ingest_username: str = "ems-platform"
    ingest_batch_rows: int = Field(default=50_000, ge=1, le=500_000)
    ingest_write_lanes: int = Field(
        default=2,
        ge=1,
        le=8,
        description="each batch is committed as this many transactions at once, on their own "
        "connections, no device in two",
    )
    ingest_flush_ms: int = Field(default=200, ge=1, le=60_000)
    ingest_queue_size: int = Field(
        default=1000, ge=2, description="messages held before the MQTT socket is paused"
    )
    ingest_keepalive_s: int = Field(default=30, ge=5, le=3600)
    ingest_gc_interval_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="with the ingest on, automatic garbage collection is off and this often "
        "(or sooner, see ingest_gc_young_limit) a full collection runs instead",
    )
    ingest_gc_young_limit: int = Field(default=1_000_000, ge=1000)
    ingest_shared_group: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_-]{1,64}$",
        description="subscribe through $share/<group>/ so N ingest workers split the load "
        "(Mosquitto; amqtt has no shared subscriptions); each worker needs its own "
        "EMS_INGEST_CLIENT_ID",
    )
    broker: str = Field(
        default="mosquitto",
        pattern=r"^(mosquitto|amqtt|other)$",
        description="which broker the ingest reads (EMS_BROKER): amqtt refuses a shared group",
    )
    reconnect_max_s: float = Field(default=30.0, gt=0)
    quality_max_kw: float = Field(
        default=2000.0,
        gt=0,
        description="suspicious_jump when a counter step implies more than this average "
        "power (kWh per hour between the two samples), so long gaps do not false-alarm",
    )
    quality_clock_skew_s: float = Field(
        default=300.0,
        ge=0,
        description="future_timestamp when a sample's ts is this far past its arrival",
    )

    db_pool_min: int = Field(default=1, ge=0)
    db_pool_max: int = Field(default=10, ge=1)
    access_cache_ttl_s: float = Field(default=60.0, gt=0)
    log_level: str = "INFO"

    auth_fail_limit: int = Field(
        default=10, ge=0, description="failed logins per client address per window (0: off)"
    )
    auth_fail_window: float = Field(
        default=60.0, gt=0, description="seconds of the failed-login window"
    )
    hooks_enabled: bool = Field(
        default=False, description="serve /mqtt/auth and /mqtt/acl for EMQX / mosquitto-go-auth"
    )
    hook_secret: SecretStr | None = Field(
        default=None, description="if set, hook callers must send it as X-EMS-Hook-Secret"
    )
    hook_allow: str = Field(
        default="127.0.0.1/32,::1/128",
        description="comma-separated networks the brokers calling the hooks live in",
    )

    @model_validator(mode="after")
    def _shared_needs_share(self) -> Self:
        # amqtt takes "$share/..." as a plain filter that matches nothing: silent data loss.
        if self.ingest_shared_group and self.broker == "amqtt":
            raise ValueError(
                "EMS_INGEST_SHARED_GROUP needs shared subscriptions, which amqtt lacks; "
                "run one ingest worker with amqtt"
            )
        return self

    @field_validator("hook_allow")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in value.split(","):
            if item.strip():
                ip_network(item.strip(), strict=False)
        return value

    @field_validator("service_token", "admin_token", "hook_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        # A guessable service or admin token opens everything: refuse it before startup.
        if value is not None and not is_strong_token(value.get_secret_value()):
            raise ValueError(f"must be a random string of at least {MIN_TOKEN_LENGTH} characters")
        return value
