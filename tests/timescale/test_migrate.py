"""The migration runner against a real PostgreSQL + TimescaleDB."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from ems_timescale import (
    Migration,
    MigrationChecksumError,
    MigrationError,
    edition,
    load_migrations,
    migrate,
)

CORE_TABLES = {"devices", "tokens", "acl_rules", "energy_readings", "raw_events", "commands"}
HYPERTABLES = {"energy_readings", "raw_events"}


async def _fetch(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


def _reading(ts: str = "2026-11-22T08:15:03Z") -> tuple[Any, ...]:
    from datetime import datetime

    return ("dev1", "A", datetime.fromisoformat(ts), *([1.0] * 9), 1, "3f9c2a1e")


INSERT_READING = """
INSERT INTO energy_readings (device_id, phase, ts, voltage_rms, current_rms, power_watt,
    power_var, power_va, power_factor, voltage_thd, current_thd, energy_kwh, seq, boot)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
"""


def test_package_ships_ordered_migrations() -> None:
    migrations = load_migrations()
    assert migrations[0].id == "0001_core"
    versions = [m.version for m in migrations]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)


def test_badly_named_file_is_refused() -> None:
    with pytest.raises(MigrationError, match=r"NNNN_name\.sql"):
        Migration.from_bytes("core.sql", b"SELECT 1;")


def test_duplicate_versions_are_refused() -> None:
    one = Migration.from_bytes("0002_a.sql", b"SELECT 1;")
    two = Migration.from_bytes("0002_b.sql", b"SELECT 2;")
    with pytest.raises(MigrationError, match="share version 0002"):
        asyncio.run(migrate("postgresql://unused", migrations=[one, two]))


async def test_migrate_applies_all_then_nothing(empty_database_url: str) -> None:
    everything = [m.id for m in load_migrations()]
    assert await migrate(empty_database_url) == everything
    assert await migrate(empty_database_url) == []


async def test_versions_are_recorded(empty_database_url: str) -> None:
    await migrate(empty_database_url)
    rows = await _fetch(
        empty_database_url,
        "SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version",
    )
    expected = [(m.version, m.name, m.checksum) for m in load_migrations()]
    assert [(r["version"], r["name"], r["checksum"]) for r in rows] == expected
    assert all(r["applied_at"] is not None for r in rows)


async def test_tables_and_hypertables_exist(database_url: str) -> None:
    tables = await _fetch(
        database_url, "SELECT table_name FROM information_schema.tables WHERE table_schema='public'"
    )
    assert {r["table_name"] for r in tables} >= CORE_TABLES
    hypertables = await _fetch(
        database_url, "SELECT hypertable_name FROM timescaledb_information.hypertables"
    )
    assert {r["hypertable_name"] for r in hypertables} >= HYPERTABLES


async def test_raw_events_indexes_devices_only_for_what_went_wrong(database_url: str) -> None:
    """Migration 0003: accepted audit rows are found by time, not by a per-device index."""
    rows = await _fetch(
        database_url, "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'raw_events'"
    )
    indexes = {r["indexname"]: r["indexdef"] for r in rows}
    assert "raw_events_device_idx" not in indexes
    device = indexes["raw_events_device_rejected_idx"]
    assert "(device_id, received_at DESC)" in device
    assert "WHERE (verdict <> 'accepted'::text)" in device
    assert "USING brin (received_at)" in indexes["raw_events_received_at_brin"]


async def test_time_indexes_are_brin_on_hypertables_and_chunks(
    db_pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    """Migration 0004: the hypertables' time columns have BRIN indexes, no B-trees, and the
    chunks inherit that. (raw_events_quarantine_idx, a partial B-tree, stays.)"""
    await db_pool.execute(INSERT_READING, *_reading())
    await db_pool.execute(
        "INSERT INTO raw_events (topic, device_id, payload, verdict) "
        "VALUES ('ems/dev1/telemetry', 'dev1', '\\x7b7d', 'accepted')"
    )
    rows = await db_pool.fetch(
        """
        SELECT c.relname AS table_name, a.attname AS column_name, am.amname AS method
        FROM pg_index i
        JOIN pg_class c ON c.oid = i.indrelid
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_am am ON am.oid = ic.relam
        JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indnatts = 1 AND i.indpred IS NULL AND a.attname IN ('ts', 'received_at')
          AND (c.relname IN ('energy_readings', 'raw_events') OR c.relname LIKE '%chunk')
        """
    )
    found = {(r["table_name"], r["column_name"], r["method"]) for r in rows}
    assert ("energy_readings", "ts", "brin") in found
    assert ("raw_events", "received_at", "brin") in found
    chunks = {(name, column) for name, column, _ in found if name.endswith("chunk")}
    assert len(chunks) == 2  # one chunk of each hypertable, each with its time index
    assert {method for *_, method in found} == {"brin"}, found


async def test_brin_time_index_serves_a_time_range(
    db_pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    # 100 devices x 3 phases x 400 s, inserted in time order as the ingest writes them.
    await db_pool.execute(
        """
        INSERT INTO energy_readings (device_id, phase, ts, voltage_rms, current_rms,
            power_watt, power_var, power_va, power_factor, voltage_thd, current_thd,
            energy_kwh, seq, boot)
        SELECT 'dev' || d, p, '2026-11-22T08:00:00Z'::timestamptz + s * INTERVAL '1 second',
            230, 5, 1000, 100, 1005, 0.99, 1, 2, s * 0.001, s, 'b1'
        FROM generate_series(0, 399) AS s, generate_series(1, 100) AS d,
            unnest(ARRAY['A', 'B', 'C']) AS p
        ORDER BY s
        """
    )
    await db_pool.execute("VACUUM ANALYZE energy_readings")  # summarises the page ranges
    query = (
        "SELECT count(*) FROM energy_readings "
        "WHERE ts >= '2026-11-22T08:05:00Z' AND ts < '2026-11-22T08:05:10Z'"
    )
    async with db_pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + query))
        count = await conn.fetchval(query)
    assert "Bitmap Index Scan on" in plan and "ts_brin" in plan, plan
    assert count == 10 * 100 * 3


async def test_unique_key_deduplicates_readings(db_pool: asyncpg.Pool[asyncpg.Record]) -> None:
    await db_pool.execute(INSERT_READING, *_reading())
    with pytest.raises(asyncpg.UniqueViolationError):
        await db_pool.execute(INSERT_READING, *_reading())
    status = await db_pool.execute(INSERT_READING + " ON CONFLICT DO NOTHING", *_reading())
    assert status == "INSERT 0 0"
    assert await db_pool.fetchval("SELECT count(*) FROM energy_readings") == 1


async def test_edition_is_apache_and_gated_block_skipped(
    db_pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    # scripts/setup-system.sh builds Debian's Apache-only TimescaleDB.
    assert await edition(db_pool) == "apache"
    compressed = await db_pool.fetchval(
        "SELECT compression_enabled FROM timescaledb_information.hypertables "
        "WHERE hypertable_name = 'energy_readings'"
    )
    assert compressed is False
    policies = await db_pool.fetchval(
        "SELECT count(*) FROM timescaledb_information.jobs WHERE proc_name = 'policy_compression'"
    )
    assert policies == 0


async def test_edited_migration_is_refused(database_url: str) -> None:
    original = load_migrations()
    edited = [
        Migration.from_bytes(f"{m.id}.sql", (m.sql + "\n-- edited\n").encode())
        if m.version == "0001"
        else m
        for m in original
    ]
    extra = Migration.from_bytes("9001_after.sql", b"CREATE TABLE after_edit (x int);")
    with pytest.raises(MigrationChecksumError, match="0001_core"):
        await migrate(database_url, migrations=[*edited, extra])
    # The refusal comes before anything is applied.
    assert (await _fetch(database_url, "SELECT to_regclass('after_edit') AS t"))[0]["t"] is None


async def test_failed_migration_leaves_nothing_behind(database_url: str) -> None:
    good = Migration.from_bytes("9001_good.sql", b"CREATE TABLE IF NOT EXISTS good (x int);")
    bad = Migration.from_bytes("9002_bad.sql", b"CREATE TABLE half_done (x int); SELECT 1 / 0;")
    with pytest.raises(MigrationError, match="9002_bad"):
        await migrate(database_url, migrations=[*load_migrations(), good, bad])
    versions = await _fetch(database_url, "SELECT version FROM schema_migrations")
    assert {r["version"] for r in versions} >= {"9001"}
    assert "9002" not in {r["version"] for r in versions}
    assert (await _fetch(database_url, "SELECT to_regclass('half_done') AS t"))[0]["t"] is None
    # Fixing the file lets the next run apply it.
    fixed = Migration.from_bytes("9002_bad.sql", b"CREATE TABLE IF NOT EXISTS half_done (x int);")
    assert await migrate(database_url, migrations=[*load_migrations(), good, fixed]) == ["9002_bad"]


async def test_concurrent_runners_take_turns(empty_database_url: str) -> None:
    results = await asyncio.gather(*(migrate(empty_database_url) for _ in range(4)))
    everything = [m.id for m in load_migrations()]
    assert sorted(results, key=len) == [[], [], [], everything]
    rows = await _fetch(empty_database_url, "SELECT count(*) AS n FROM schema_migrations")
    assert rows[0]["n"] == len(everything)


async def test_every_migration_is_safe_to_rerun(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for migration in load_migrations():
            await conn.execute(migration.sql)
    finally:
        await conn.close()
