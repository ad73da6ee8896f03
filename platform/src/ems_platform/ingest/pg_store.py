"""The real ReadingStore: one transaction per batch, COPY into staging, idempotent insert.

Quality is computed here, against the database, inside the batch's transaction: each
device's advisory lock (taken in one global order, so two workers never deadlock) makes the
rows read and the rows written one consistent step, whichever worker the broker handed a
device's samples to and however often the process restarted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from ems_contract import MEASUREMENTS
from ems_platform.core.db import Connection, Pool
from ems_platform.ingest.deltas import QualityRules
from ems_platform.ingest.envelope import READING_COLUMNS, Envelope, ReadingRow
from ems_platform.ingest.quality import Plan, context_keys, plan_batch, series_of
from ems_platform.ingest.store import BatchRejectedError, StoreUnavailableError

# Lives for the connection's lifetime; ON COMMIT DELETE ROWS empties it after every batch.
_CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS ems_ingest_stage (
    msg integer NOT NULL,
    ord integer NOT NULL,
    device_id text, phase text, ts timestamptz,
    voltage_rms float8, current_rms float8, power_watt float8, power_var float8,
    power_va float8, power_factor float8, voltage_thd float8, current_thd float8,
    energy_kwh float8, energy_delta_kwh float8, flags text[], seq bigint, boot text,
    received_at timestamptz
) ON COMMIT DELETE ROWS
"""
_STAGE_COLUMNS = ("msg", "ord", *READING_COLUMNS)
_COLUMN_LIST = ", ".join(READING_COLUMNS)
# ORDER BY makes the earliest message win when a batch holds the same key twice.
_INSERT = f"""
INSERT INTO energy_readings ({_COLUMN_LIST})
SELECT {_COLUMN_LIST} FROM ems_ingest_stage ORDER BY msg, ord
ON CONFLICT (device_id, phase, ts) DO NOTHING
RETURNING device_id, phase, ts
"""
_RAW_COLUMNS = ("received_at", "topic", "device_id", "payload", "verdict", "reason", "detail")
_LAST_SEEN = """
UPDATE devices SET last_seen = GREATEST(last_seen, $2) WHERE device_id = $1
"""
# A retained status replayed on reconnect, or one overtaken by a newer one, changes nothing.
_STATUS = """
UPDATE devices
SET online = $2, status = $3::jsonb, status_at = $4,
    last_seen = CASE WHEN $2 THEN GREATEST(last_seen, $5) ELSE last_seen END
WHERE device_id = $1 AND (status_at IS NULL OR status_at <= $4)
"""
_ACK = """
UPDATE commands
SET state = $3, acked_at = $4, result = $5::jsonb, error = $6
WHERE id = $1 AND device_id = $2 AND state IN ('pending', 'delivered')
"""
# unnest keeps the array's order, so the locks are taken in the order Python sorted them.
_LOCK = "SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k"
_NEWEST = f"""
SELECT r.* FROM unnest($1::text[], $2::text[]) AS s(device_id, phase)
CROSS JOIN LATERAL (
    SELECT {_COLUMN_LIST} FROM energy_readings e
    WHERE e.device_id = s.device_id AND e.phase = s.phase
    ORDER BY e.ts DESC LIMIT 1
) AS r
"""
# Only for rows not newer than the newest stored: the stored row at or before each (its
# duplicate, or its predecessor) and the one after it (whose delta it changes).
_AROUND = f"""
WITH k AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS k(device_id, phase, ts)
)
SELECT r.* FROM k CROSS JOIN LATERAL (
    SELECT {_COLUMN_LIST} FROM energy_readings e
    WHERE e.device_id = k.device_id AND e.phase = k.phase AND e.ts <= k.ts
    ORDER BY e.ts DESC LIMIT 1
) AS r
UNION ALL
SELECT r.* FROM k CROSS JOIN LATERAL (
    SELECT {_COLUMN_LIST} FROM energy_readings e
    WHERE e.device_id = k.device_id AND e.phase = k.phase AND e.ts > k.ts
    ORDER BY e.ts LIMIT 1
) AS r
"""
_UPDATE = """
UPDATE energy_readings SET energy_delta_kwh = $4, flags = $5
WHERE device_id = $1 AND phase = $2 AND ts = $3
"""

#: Errors about the data itself; anything else (connection, shutdown, locks) is transient.
_POISON = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)
# InternalClientError: asyncpg's "another operation is in progress" when the server goes
# away mid-transaction (seen while PostgreSQL shuts down) - the connection, not the data.
_TRANSIENT = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


def _credit(batch: Sequence[Envelope], inserted: set[tuple[str, str, datetime]]) -> list[int]:
    """Give each inserted key to the first envelope that carried it; the rest are duplicates."""
    stored = []
    for envelope in batch:
        count = 0
        for row in envelope.rows:
            if row.key in inserted:
                inserted.discard(row.key)
                count += 1
        stored.append(count)
    return stored


def lock_key(device_id: str) -> int:
    """A stable signed 64-bit advisory-lock key per device (same in every worker)."""
    digest = hashlib.blake2b(b"ems.readings:" + device_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _row(record: asyncpg.Record) -> ReadingRow:
    return ReadingRow(
        device_id=record["device_id"],
        phase=record["phase"],
        ts=record["ts"],
        values=tuple(record[name] for name in MEASUREMENTS),
        energy_delta_kwh=record["energy_delta_kwh"],
        flags=tuple(record["flags"]),
        seq=record["seq"],
        boot=record["boot"],
        received_at=record["received_at"],
    )


class PgReadingStore:
    def __init__(self, pool: Pool, rules: QualityRules | None = None) -> None:
        self._pool = pool
        self._rules = rules or QualityRules()

    async def write(self, batch: Sequence[Envelope]) -> list[int]:
        try:
            return await self._write(batch)
        except _POISON as exc:
            raise BatchRejectedError(f"{type(exc).__name__}: {exc}") from exc
        except _TRANSIENT as exc:
            raise StoreUnavailableError(f"{type(exc).__name__}: {exc}") from exc

    async def _plan(self, conn: Connection, batch: Sequence[Envelope]) -> Plan:
        series = series_of(batch)
        if not series:
            return plan_batch(batch, [], self._rules)
        keys = sorted({lock_key(device) for device, _ in series})
        await conn.fetchval(_LOCK, keys)
        stored = [
            _row(r)
            for r in await conn.fetch(_NEWEST, [d for d, _ in series], [p for _, p in series])
        ]
        newest = {(row.device_id, row.phase): row.ts for row in stored}
        around = context_keys(batch, newest)
        if around:
            records = await conn.fetch(
                _AROUND, [k[0] for k in around], [k[1] for k in around], [k[2] for k in around]
            )
            stored.extend(_row(r) for r in records)
        return plan_batch(batch, stored, self._rules)

    async def _write(self, batch: Sequence[Envelope]) -> list[int]:
        async with self._pool.acquire() as conn, conn.transaction():
            plan = await self._plan(conn, batch)
            for envelope, conflicts in zip(batch, plan.conflicts, strict=True):
                envelope.conflicts = conflicts
            staged = [(msg, ord_, *row.record()) for msg, ord_, row in plan.inserts]
            inserted: set[tuple[str, str, datetime]] = set()
            if staged:
                await conn.execute(_CREATE_STAGE)
                await conn.copy_records_to_table(
                    "ems_ingest_stage", records=staged, columns=_STAGE_COLUMNS
                )
                for record in await conn.fetch(_INSERT):
                    inserted.add((record["device_id"], record["phase"], record["ts"]))
            if plan.updates:
                await conn.executemany(
                    _UPDATE,
                    [
                        (r.device_id, r.phase, r.ts, r.energy_delta_kwh, list(r.flags))
                        for r in plan.updates
                    ],
                )
            stored = _credit(batch, inserted)
            await conn.copy_records_to_table(
                "raw_events",
                records=[self._raw(env, n) for env, n in zip(batch, stored, strict=True)],
                columns=_RAW_COLUMNS,
            )
            await self._update_devices(conn, batch)
        return stored

    @staticmethod
    def _raw(envelope: Envelope, stored: int) -> tuple[Any, ...]:
        incoming = envelope.incoming
        return (
            incoming.received_at,
            incoming.topic,
            envelope.device_id,
            incoming.payload,
            envelope.verdict(stored).value,
            envelope.reason,
            envelope.detail_json(),
        )

    @staticmethod
    async def _update_devices(conn: Connection, batch: Sequence[Envelope]) -> None:
        seen: dict[str, datetime] = {}
        for envelope in batch:
            if envelope.rows and envelope.device_id is not None:
                at = envelope.incoming.received_at
                seen[envelope.device_id] = max(at, seen.get(envelope.device_id, at))
        if seen:
            await conn.executemany(_LAST_SEEN, sorted(seen.items()))
        statuses = [
            (s.device_id, s.online, json.dumps(s.status), s.status_at, s.received_at)
            for s in (env.status for env in batch)
            if s is not None
        ]
        if statuses:
            await conn.executemany(_STATUS, statuses)
        acks = [
            (
                a.command_id,
                a.device_id,
                a.state,
                a.acked_at,
                None if a.result is None else json.dumps(a.result),
                a.error,
            )
            for a in (env.ack for env in batch)
            if a is not None
        ]
        if acks:
            await conn.executemany(_ACK, acks)
