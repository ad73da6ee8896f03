"""Named errors, so callers (the `ems` CLI, fixtures) can tell a setup problem from a bug."""


class TimescaleError(Exception):
    """Base class for everything this package raises on purpose."""


class MigrationError(TimescaleError):
    """A migration could not be discovered, checked or applied."""


class MigrationChecksumError(MigrationError):
    """An applied migration file was edited afterwards; forward-only means add a new file."""


class UnknownEditionError(TimescaleError):
    """`timescaledb.license` held something other than 'apache' or 'timescale'."""


class ClusterError(TimescaleError):
    """The embedded PostgreSQL cluster could not be initialised, started or stopped."""


class PostgresNotFoundError(ClusterError):
    """No PostgreSQL server binaries were found."""


class TimescaleNotInstalledError(ClusterError):
    """PostgreSQL is there but the TimescaleDB extension is not."""


class DataDirAccessError(ClusterError):
    """The OS user that runs postgres cannot reach or own the data directory."""
