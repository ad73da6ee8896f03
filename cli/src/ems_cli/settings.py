"""Settings of ``ems up``: where its state lives and which ports the stack uses."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """/var/lib/ems for root (the embedded PostgreSQL runs as ``postgres`` and must reach it),
    otherwise the XDG data home."""
    if os.geteuid() == 0:
        return Path("/var/lib/ems")
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ems"


class UpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EMS_", extra="ignore")

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="embedded database, tokens of the simulated devices, their outboxes",
    )
    database_url: SecretStr | None = Field(
        default=None, description="use this database instead of the embedded cluster"
    )
    db_port: int = Field(default=0, ge=0, le=65535, description="embedded cluster port; 0: free")
    admin_token: SecretStr | None = Field(
        default=None, description="installed as an admin token so scripts can call the API"
    )
    host: str = Field(default="127.0.0.1", description="address every listener binds to")
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    api_port: int = Field(default=8000, ge=1, le=65535)
    ws_port: int = Field(default=8001, ge=1, le=65535)
