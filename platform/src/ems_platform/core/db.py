"""The asyncpg pool: opened once per process by whoever owns the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from ems_platform.core.errors import DatabaseUnavailableError, SchemaNotMigratedError

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

log = logging.getLogger(__name__)

Pool = asyncpg.Pool  # the record class is the default one everywhere in the platform
#: What ``pool.acquire()`` yields.
Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record] | asyncpg.Connection[asyncpg.Record]"

#: Tables the platform reads or writes; all come from ``ems migrate``.
REQUIRED_TABLES = ("devices", "tokens", "acl_rules", "energy_readings", "raw_events", "commands")


async def check_schema(pool: Pool) -> None:
    """Fail fast, with the fix in the message, when the database was never migrated."""
    rows = await pool.fetch(
        "SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NULL",
        list(REQUIRED_TABLES),
    )
    missing = [row["t"] for row in rows]
    if missing:
        raise SchemaNotMigratedError(
            f"database is not migrated (missing tables: {', '.join(missing)}); "
            "run `ems migrate` first"
        )


@asynccontextmanager
async def open_pool(
    dsn: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    init: Callable[[asyncpg.Connection[asyncpg.Record]], Coroutine[Any, Any, None]] | None = None,
) -> AsyncIterator[Pool]:
    """A pool against a migrated database; closed on exit. ``init`` runs on every new
    connection (asyncpg's pool ``init``)."""
    try:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=init)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # The DSN may hold a password: name the error class, never the DSN.
        raise DatabaseUnavailableError(
            f"cannot connect to the database: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        await check_schema(pool)
        yield pool
    finally:
        await pool.close()


async def ping(pool: Pool, limit: float = 2.0) -> bool:
    """True when a pooled connection answers a trivial query in time."""
    try:
        return bool(await pool.fetchval("SELECT 1", timeout=limit) == 1)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
