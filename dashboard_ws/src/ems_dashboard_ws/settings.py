"""Settings of the dashboard adapter, read from ``EMS_*`` environment variables."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    """One settings class for the adapter process (ARCHITECTURE section 8).

    There is deliberately no default for the service token or the database: an adapter
    that silently ran with a well-known secret would be worse than one that refuses to start.
    """

    model_config = SettingsConfigDict(env_prefix="EMS_", extra="ignore")

    database_url: SecretStr = Field(description="PostgreSQL DSN of the token store")
    service_token: SecretStr = Field(description="token the adapter presents to the broker")

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str = "ems-dashboard"
    mqtt_subscription: str = Field(
        default="ems/#", description="one broker subscription serves every browser"
    )
    mqtt_backoff_initial: float = Field(default=0.5, gt=0)
    mqtt_backoff_max: float = Field(default=30.0, gt=0)

    ws_host: str = "127.0.0.1"
    ws_port: int = Field(default=8001, ge=0, le=65535)
    ws_queue_size: int = Field(
        default=256, ge=1, description="frames buffered per browser before the oldest is dropped"
    )
    ws_ping_interval: float = Field(default=20.0, gt=0)
    ws_ping_misses: int = Field(default=3, ge=1)
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    ws_max_filters: int = Field(default=256, ge=1, description="subscriptions per connection")

    auth_cache_ttl: float = Field(
        default=5.0, gt=0, description="seconds a token lookup is trusted before rechecking"
    )
    auth_refresh_interval: float = Field(
        default=5.0,
        gt=0,
        description="how often live sessions are re-checked, so revocation ends them",
    )
    retained_limit: int = Field(default=100_000, ge=1, description="retained topics remembered")
    auth_fail_limit: int = Field(
        default=10, ge=0, description="failed logins per client address per window (0: off)"
    )
    auth_fail_window: float = Field(
        default=60.0, gt=0, description="seconds of the failed-login window"
    )
