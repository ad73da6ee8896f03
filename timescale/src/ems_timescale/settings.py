"""Environment settings for the database tools (`python -m ems_timescale`)."""

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class TimescaleSettings(BaseSettings):
    """EMS_DATABASE_URL is the database to migrate; EMS_PG_BIN pins the server binaries."""

    model_config = SettingsConfigDict(env_prefix="EMS_", extra="ignore")

    database_url: str | None = None
    pg_bin: Path | None = None
