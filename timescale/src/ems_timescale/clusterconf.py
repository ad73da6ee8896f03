"""The server settings an embedded cluster runs with.

They are written to `ems.conf` in the data directory on every start (postgresql.conf
includes it last), so a new release's defaults apply to an existing cluster. An operator
who wants other values uses ALTER SYSTEM: postgresql.auto.conf is read after both.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

CONF_NAME = "ems.conf"
INCLUDE_LINE = f"include_if_exists = '{CONF_NAME}'"
LOG_DIR = "log"
# sun_path holds 108 bytes including the terminating NUL.
MAX_SOCKET_PATH = 107

# The embedded database shares a 2-core, 24 GB machine with the broker, the platform and
# the dashboard, so it takes about a tenth of memory for buffers instead of the usual
# quarter a dedicated server would, and plans for two cores.
DURABLE_SETTINGS: dict[str, str] = {
    "max_connections": "100",
    "shared_buffers": "2GB",
    "effective_cache_size": "12GB",
    "work_mem": "16MB",
    "maintenance_work_mem": "512MB",
    "wal_buffers": "16MB",
    "min_wal_size": "512MB",
    "max_wal_size": "4GB",
    "checkpoint_completion_target": "0.9",
    "random_page_cost": "1.1",
    "effective_io_concurrency": "200",
    "max_worker_processes": "16",
    "max_parallel_workers": "2",
    "max_parallel_workers_per_gather": "1",
    "max_parallel_maintenance_workers": "1",
    "timescaledb.max_background_workers": "8",
}

# Throwaway test clusters: several run at once beside the rest of a test session, every
# test gets its own database (and TimescaleDB a scheduler worker for it), and nothing needs
# to survive a crash, so memory is small and durability is off.
THROWAWAY_SETTINGS: dict[str, str] = {
    "max_connections": "300",
    "shared_buffers": "128MB",
    "effective_cache_size": "1GB",
    "work_mem": "8MB",
    "maintenance_work_mem": "64MB",
    "max_wal_size": "1GB",
    "max_worker_processes": "24",
    "max_parallel_workers": "2",
    "max_parallel_workers_per_gather": "0",
    "timescaledb.max_background_workers": "16",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
}

# Only loopback TCP and the socket inside the (0700) data directory are served; see README.
PG_HBA = """\
# Written by ems_timescale.cluster on every start.
# TYPE  DATABASE  USER  ADDRESS       METHOD
local   all       all                 trust
host    all       all   127.0.0.1/32  trust
"""


def socket_dir_for(data_dir: Path, port: int) -> str:
    """The data directory itself, or '' (no unix socket) when its path is too long for one."""
    socket_path = data_dir / f".s.PGSQL.{port}"
    return str(data_dir) if len(str(socket_path)) <= MAX_SOCKET_PATH else ""


def settings_for(
    *, port: int, socket_dir: str, durable: bool, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": str(port),
        "unix_socket_directories": socket_dir,
        "unix_socket_permissions": "0700",
        "shared_preload_libraries": "timescaledb",
        "timescaledb.telemetry_level": "off",
        "timezone": "UTC",
        "log_timezone": "UTC",
        "logging_collector": "on",
        "log_directory": LOG_DIR,
        "log_filename": "postgresql-%a.log",
        "log_truncate_on_rotation": "on",
        "log_rotation_age": "1d",
        "log_rotation_size": "0",
        "log_line_prefix": "%m [%p] %q%u@%d ",
    }
    settings.update(DURABLE_SETTINGS if durable else THROWAWAY_SETTINGS)
    if extra:
        settings.update(extra)
    return settings


def render(settings: Mapping[str, str]) -> str:
    lines = ["# Written by ems_timescale.cluster on every start; use ALTER SYSTEM to override."]
    lines += [f"{name} = {_quote(value)}" for name, value in settings.items()]
    return "\n".join(lines) + "\n"


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
