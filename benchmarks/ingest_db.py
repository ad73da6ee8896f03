"""The database side of the ingest benchmark: principals, progress and the count check.

Rates are measured here, from what is committed, not from what any pipeline says it did.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from ems_access.rules import AclRule
from ems_access.store import create_token

# Cheap progress for the load generators' credit: rows inserted into the chunks of
# energy_readings according to the statistics collector (flushed by each backend about
# once a second), instead of a count(*) over millions of rows four times a second.
_INSERTED_ESTIMATE = """
SELECT coalesce(sum(s.n_tup_ins), 0)::bigint
FROM pg_stat_user_tables s
JOIN timescaledb_information.chunks c
  ON s.schemaname = c.chunk_schema AND s.relname = c.chunk_name
WHERE c.hypertable_name = 'energy_readings'
"""


@dataclass(frozen=True)
class Committed:
    """Rows committed so far, counted exactly, and when."""

    readings: int
    messages: int  # raw_events rows: one per message the platform recorded
    at: float  # time.monotonic() before the count started
    wal_bytes: int  # WAL written since the cluster began (pg_current_wal_lsn)


#: Seconds per slice of the window in ``slice_rates``.
SLICE_S = 15.0


def slice_rates(
    samples: Sequence[tuple[float, int]], start: float, end: float, width: float = SLICE_S
) -> list[float]:
    """Rows per second in consecutive ``width``-second slices of [start, end), from
    (time.monotonic(), rows) samples of ``_INSERTED_ESTIMATE``; a slice needs a sample at or
    before its start and one at or after its end. Rows at a slice edge are interpolated
    between the samples around it.

    The estimate moves in steps of one commit (each backend reports about once a second), so
    a slice is good to about one commit's rows: with 15 s slices and 25,000-row commits, a few
    per cent. What this shows is the drift within a window, which its average hides.
    """
    points = sorted(samples)

    def rows_at(at: float) -> float | None:
        before = [p for p in points if p[0] <= at]
        after = [p for p in points if p[0] >= at]
        if not before or not after:
            return None
        (t0, r0), (t1, r1) = before[-1], after[0]
        return float(r0) if t1 == t0 else r0 + (r1 - r0) * (at - t0) / (t1 - t0)

    rates = []
    edge = start
    while edge + width <= end + 1e-9:
        first, last = rows_at(edge), rows_at(edge + width)
        if first is not None and last is not None:
            rates.append(round((last - first) / width, 1))
        edge += width
    return rates


async def make_publisher_tokens(dsn: str, count: int) -> list[str]:
    """``service`` tokens that may write any device's telemetry topic and nothing else."""
    rules = [AclRule("ems/+/telemetry", "write")]
    conn = await asyncpg.connect(dsn)
    try:
        tokens = []
        for n in range(count):
            _, token = await create_token(
                conn, role="service", label=f"ingest bench load {n}", acl=rules
            )
            tokens.append(token)
        return tokens
    finally:
        await conn.close()


async def make_service_token(dsn: str, label: str) -> str:
    conn = await asyncpg.connect(dsn)
    try:
        _, token = await create_token(conn, role="service", label=label)
        return token
    finally:
        await conn.close()


async def register_devices(dsn: str, ids: list[str]) -> None:
    """Real rows, so the platform's last_seen updates do the work they do for a fleet."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO devices (device_id, name) VALUES ($1, 'ingest benchmark')"
            " ON CONFLICT DO NOTHING",
            [(device_id,) for device_id in ids],
        )
    finally:
        await conn.close()


class Progress:
    """One connection of the orchestrator's, for counting."""

    def __init__(self, conn: asyncpg.Connection[Any]) -> None:
        self._conn = conn

    @classmethod
    async def connect(cls, dsn: str) -> Progress:
        return cls(await asyncpg.connect(dsn))

    async def close(self) -> None:
        await self._conn.close()

    async def vacuum(self) -> None:
        """VACUUM (ANALYZE) the tables the ingest wrote, so no autovacuum of an earlier
        phase's millions of rows runs during the next window."""
        for table in ("energy_readings", "raw_events", "devices"):
            await self._conn.execute(f"VACUUM (ANALYZE) {table}")

    async def inserted_estimate(self) -> int:
        return int(await self._conn.fetchval(_INSERTED_ESTIMATE))

    async def committed(self) -> Committed:
        at = time.monotonic()
        # One snapshot for both counts.
        async with self._conn.transaction(isolation="repeatable_read", readonly=True):
            readings = await self._conn.fetchval("SELECT count(*) FROM energy_readings")
            messages = await self._conn.fetchval("SELECT count(*) FROM raw_events")
        wal = await self._conn.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        return Committed(int(readings), int(messages), at, int(wal))

    async def rows_by_device(self, prefix: str) -> dict[str, int]:
        records = await self._conn.fetch(
            "SELECT device_id, count(*) AS n FROM energy_readings"
            " WHERE device_id LIKE $1 GROUP BY device_id",
            prefix + "-%",
        )
        return {r["device_id"]: int(r["n"]) for r in records}

    async def verdicts(self, prefix: str) -> dict[str, int]:
        records = await self._conn.fetch(
            "SELECT verdict, count(*) AS n FROM raw_events WHERE device_id LIKE $1"
            " GROUP BY verdict ORDER BY verdict",
            prefix + "-%",
        )
        return {r["verdict"]: int(r["n"]) for r in records}

    async def flags(self, prefix: str) -> dict[str, int]:
        records = await self._conn.fetch(
            "SELECT f, count(*) AS n FROM energy_readings, unnest(flags) AS f"
            " WHERE device_id LIKE $1 GROUP BY f ORDER BY f",
            prefix + "-%",
        )
        return {r["f"]: int(r["n"]) for r in records}


def count_check(expected: dict[str, int], stored: dict[str, int]) -> dict[str, Any]:
    """Every device holds exactly the rows it sent: none missing, none extra."""
    missing = {d: n - stored.get(d, 0) for d, n in expected.items() if stored.get(d, 0) < n}
    extra = {d: stored.get(d, 0) - n for d, n in expected.items() if stored.get(d, 0) > n}
    strangers = sorted(set(stored) - set(expected))
    return {
        "rows_expected": sum(expected.values()),
        "rows_stored": sum(stored.values()),
        "devices_short": len(missing),
        "rows_missing": sum(missing.values()),
        "devices_over": len(extra) + len(strangers),
        "ok": not missing and not extra and not strangers,
    }
