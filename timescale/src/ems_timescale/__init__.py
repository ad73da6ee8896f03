"""EMS database: forward-only SQL migrations, their runner, an embedded PostgreSQL cluster."""

from ems_timescale.cluster import LocalCluster, free_port
from ems_timescale.errors import (
    ClusterError,
    DataDirAccessError,
    MigrationChecksumError,
    MigrationError,
    PostgresNotFoundError,
    TimescaleError,
    TimescaleNotInstalledError,
    UnknownEditionError,
)
from ems_timescale.migrate import Edition, Migration, edition, load_migrations, migrate

__all__ = [
    "ClusterError",
    "DataDirAccessError",
    "Edition",
    "LocalCluster",
    "Migration",
    "MigrationChecksumError",
    "MigrationError",
    "PostgresNotFoundError",
    "TimescaleError",
    "TimescaleNotInstalledError",
    "UnknownEditionError",
    "edition",
    "free_port",
    "load_migrations",
    "migrate",
]
