"""Forward-only migration runner over the SQL files shipped in ems_timescale/migrations.

Files are named NNNN_name.sql and applied in order, each in its own transaction, under a
database-wide advisory lock so that two runners (two services starting at once) take turns
instead of racing. An applied file may never change: a new file carries every change.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ems_timescale.errors import MigrationChecksumError, MigrationError, UnknownEditionError

logger = logging.getLogger(__name__)

Edition: TypeAlias = Literal["apache", "timescale"]
Queryable: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any] | asyncpg.Pool[Any]"

MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
# One fixed key for every version of the runner: "EMS_MIGR" in ASCII.
LOCK_KEY = 0x454D535F4D494752

SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str
    checksum: str

    @property
    def id(self) -> str:
        return f"{self.version}_{self.name}"

    @classmethod
    def from_bytes(cls, filename: str, data: bytes) -> Migration:
        match = MIGRATION_FILE.match(filename)
        if match is None:
            raise MigrationError(f"migration file name {filename!r} is not NNNN_name.sql")
        return cls(
            version=match["version"],
            name=match["name"],
            sql=data.decode("utf-8"),
            checksum=hashlib.sha256(data).hexdigest(),
        )


def load_migrations(package: str = "ems_timescale", folder: str = "migrations") -> list[Migration]:
    """The package's migrations in version order."""
    root = resources.files(package).joinpath(folder)
    found = [
        Migration.from_bytes(entry.name, entry.read_bytes())
        for entry in root.iterdir()
        if entry.name.endswith(".sql")
    ]
    return _ordered(found)


async def migrate(dsn: str, *, migrations: Sequence[Migration] | None = None) -> list[str]:
    """Apply every pending migration to the database at `dsn`; return the ids applied."""
    wanted = load_migrations() if migrations is None else _ordered(migrations)
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        raise MigrationError(f"cannot connect to the database to migrate it: {exc}") from exc
    try:
        await _lock(conn)
        return await _apply_pending(conn, wanted)
    finally:
        # Closing the session also releases the advisory lock.
        await conn.close()


async def edition(conn: Queryable) -> Edition:
    """Which TimescaleDB edition serves `conn`: 'apache' (Debian's build) or 'timescale'."""
    try:
        value = await conn.fetchval("SHOW timescaledb.license")
    except asyncpg.UndefinedObjectError as exc:
        raise UnknownEditionError(
            "TimescaleDB is not loaded (shared_preload_libraries must list timescaledb)"
        ) from exc
    if value == "apache":
        return "apache"
    if value == "timescale":
        return "timescale"
    raise UnknownEditionError(f"unknown timescaledb.license {value!r}")


def _ordered(migrations: Sequence[Migration]) -> list[Migration]:
    ordered = sorted(migrations, key=lambda m: m.version)
    for before, after in itertools.pairwise(ordered):
        if before.version == after.version:
            raise MigrationError(
                f"two migrations share version {before.version}: {before.id} and {after.id}"
            )
    return ordered


async def _lock(conn: asyncpg.Connection[Any]) -> None:
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
        logger.info("another migration runner holds the lock; waiting for it")
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)


async def _apply_pending(conn: asyncpg.Connection[Any], wanted: list[Migration]) -> list[str]:
    await conn.execute(SCHEMA_MIGRATIONS)
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    applied = {row["version"]: row for row in rows}
    for migration in wanted:
        row = applied.get(migration.version)
        if row is not None and row["checksum"] != migration.checksum:
            raise MigrationChecksumError(
                f"migration {migration.id} was applied with checksum {row['checksum']}, but "
                f"the file now has {migration.checksum}: applied migrations must not change; "
                "put the change in a new migration file"
            )
    unknown = sorted(set(applied) - {m.version for m in wanted})
    if unknown:
        logger.warning("database has migrations this release does not know: %s", unknown)
    done: list[str] = []
    for migration in wanted:
        if migration.version in applied:
            continue
        try:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"migration {migration.id} failed: {exc}") from exc
        logger.info("applied migration %s", migration.id)
        done.append(migration.id)
    return done
