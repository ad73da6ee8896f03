"""The real ReadingStore: one transaction per batch, rows COPYed straight into the table.

Quality is computed here, against the database, inside the batch's transaction: each
device's advisory lock (taken in one global order, so two workers never deadlock) makes the
rows read and the rows written one consistent step, whichever worker the broker handed a
device's samples to and however often the process restarted.

Under that lock the plan knows exactly which rows are new (it has the newest stored row of
every series and the stored neighbours of every older row), so new rows are COPYed into
``energy_readings`` directly: no staging table, no ``ON CONFLICT``, no ``RETURNING``.
The newest stored row per series is remembered between batches (``Heads``) and trusted only
while ``devices.readings_version`` still holds the value this worker's last commit gave it
(migration 0002); otherwise it is read again. Should the direct COPY still meet a stored
key (a writer that bypassed both), the batch is retried the defensive way: staging table and
``INSERT ... ON CONFLICT DO NOTHING``, with nothing remembered.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from ems_contract import MEASUREMENTS, PHASES
from ems_platform.core.db import Connection, Pool
from ems_platform.ingest.deltas import QualityRules
from ems_platform.ingest.envelope import (
    READING_COLUMNS,
    UNFLAGGED_COLUMNS,
    Envelope,
    ReadingRow,
    Verdict,
)
from ems_platform.ingest.quality import Plan, context_keys, oldest_per_series, plan_batch
from ems_platform.ingest.store import BatchRejectedError, StoreUnavailableError

log = logging.getLogger(__name__)

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
# One statement for every device with readings in the batch: last seen, and a new version
# that tells other workers their memory of this device's newest readings is out of date.
_TOUCH = """
UPDATE devices AS d
SET last_seen = GREATEST(d.last_seen, u.seen),
    readings_version = nextval('readings_version_seq')
FROM unnest($1::text[], $2::timestamptz[]) AS u(device_id, seen)
WHERE d.device_id = u.device_id
RETURNING d.device_id, d.readings_version
"""
_VERSIONS = "SELECT device_id, readings_version FROM devices WHERE device_id = ANY($1::text[])"
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


_ACCEPTED = Verdict.ACCEPTED.value
_DUPLICATE = Verdict.DUPLICATE.value


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


@functools.lru_cache(maxsize=65536)
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


Series = tuple[str, str]


class Heads:
    """The newest stored row of each series this worker wrote, under each device's version.

    ``None`` for a series means "no row stored" (as of that version), which is knowledge
    too; a series missing from the map is unknown and is read from the database. Flat maps,
    since this runs for every series of every batch.
    """

    def __init__(self) -> None:
        self._versions: dict[str, int] = {}
        self._rows: dict[Series, ReadingRow | None] = {}

    def clear(self) -> None:
        self._versions.clear()
        self._rows.clear()

    def known(
        self, series: Iterable[Series], versions: dict[str, int | None]
    ) -> tuple[dict[Series, ReadingRow | None], list[Series]]:
        """What is remembered of ``series`` under the stored ``versions``, and what is not."""
        mine, rows = self._versions, self._rows
        known: dict[Series, ReadingRow | None] = {}
        unknown: list[Series] = []
        for key in series:
            version = versions.get(key[0])
            if version is not None and mine.get(key[0]) == version and key in rows:
                known[key] = rows[key]
            else:
                unknown.append(key)
        return known, unknown

    def committed(
        self,
        read: dict[str, int | None],
        before: dict[Series, ReadingRow | None],
        newest: dict[Series, ReadingRow],
        updates: Iterable[ReadingRow],
        versions: dict[str, int],
    ) -> None:
        """After a commit that moved each device from version ``read`` to ``versions``: the
        newest row of every series the batch touched (``before`` it, or the plan's
        ``newest``, stored or written, with the ``updates`` it made to stored rows)."""
        mine, rows = self._versions, self._rows
        for device, version in versions.items():
            if mine.get(device) != read.get(device):
                # Someone else wrote the device since we did: its other series are unknown.
                for phase in PHASES:
                    rows.pop((device, phase), None)
            mine[device] = version
        rows.update(before)
        rows.update(newest)
        for row in updates:
            key = (row.device_id, row.phase)
            current = rows.get(key)
            if current is not None and row.ts == current.ts:
                rows[key] = row  # the newest stored row, with its new delta or flags
        for device in {device for device, _ in before if device not in versions}:
            # Not registered (no version): nothing about it can be trusted later.
            mine.pop(device, None)
            for phase in PHASES:
                rows.pop((device, phase), None)


class _CacheWrong(Exception):
    """The direct COPY met a stored key: what was remembered is not true."""


class PgReadingStore:
    def __init__(self, pool: Pool, rules: QualityRules | None = None) -> None:
        self._pool = pool
        self._rules = rules or QualityRules()
        self.heads = Heads()

    async def write(self, batch: Sequence[Envelope]) -> list[int]:
        try:
            return await self._write(batch)
        except _POISON as exc:
            raise BatchRejectedError(f"{type(exc).__name__}: {exc}") from exc
        except _TRANSIENT as exc:
            raise StoreUnavailableError(f"{type(exc).__name__}: {exc}") from exc

    async def _write(self, batch: Sequence[Envelope]) -> list[int]:
        try:
            return await self._attempt(batch, direct=True)
        except _CacheWrong:
            log.warning(
                "a row the ingest took for new was already stored (a writer outside the "
                "ingest?); retrying the batch with ON CONFLICT and forgetting cached state"
            )
            self.heads.clear()
            return await self._attempt(batch, direct=False)

    async def _attempt(self, batch: Sequence[Envelope], *, direct: bool) -> list[int]:
        oldest = oldest_per_series(batch)
        series = sorted(oldest)
        devices = sorted({device for device, _ in series})
        async with self._pool.acquire() as conn, conn.transaction():
            read: dict[str, int | None] = {}
            before: dict[Series, ReadingRow | None] = {}
            if series:
                await conn.fetchval(_LOCK, sorted({lock_key(device) for device in devices}))
                if direct:
                    read = {r[0]: r[1] for r in await conn.fetch(_VERSIONS, devices)}
                before, unknown = self.heads.known(series, read)
                if unknown:
                    before.update(dict.fromkeys(unknown))
                    records = await conn.fetch(
                        _NEWEST, [d for d, _ in unknown], [p for _, p in unknown]
                    )
                    before.update(((r["device_id"], r["phase"]), _row(r)) for r in records)
            plan = await self._plan(conn, batch, before, oldest)
            for envelope, conflicts in zip(batch, plan.conflicts, strict=True):
                envelope.conflicts = conflicts
            if direct:
                await self._insert_direct(conn, plan, series)
                # Every planned row was inserted, by the first message that carried its key;
                # when the plan left no row out, that is every message's every row.
                stored = [len(envelope.rows) for envelope in batch]
                if sum(stored) != len(plan.inserts):
                    stored = [0] * len(batch)
                    for msg, _, _ in plan.inserts:
                        stored[msg] += 1
            else:
                stored = _credit(batch, await self._insert_staged(conn, plan))
            if plan.updates:
                await conn.executemany(
                    _UPDATE,
                    [
                        (r.device_id, r.phase, r.ts, r.energy_delta_kwh, list(r.flags))
                        for r in plan.updates
                    ],
                )
            await conn.copy_records_to_table(
                "raw_events",
                records=[self._raw(env, n) for env, n in zip(batch, stored, strict=True)],
                columns=_RAW_COLUMNS,
            )
            versions = await self._update_devices(conn, batch)
        if direct:
            self.heads.committed(read, before, plan.newest, plan.updates, versions)
        return stored

    async def _plan(
        self,
        conn: Connection,
        batch: Sequence[Envelope],
        before: dict[Series, ReadingRow | None],
        oldest: dict[Series, datetime],
    ) -> Plan:
        stored = [row for row in before.values() if row is not None]
        around = context_keys(batch, before, oldest)
        if around:
            records = await conn.fetch(
                _AROUND, [k[0] for k in around], [k[1] for k in around], [k[2] for k in around]
            )
            stored.extend(_row(r) for r in records)
        return plan_batch(batch, stored, self._rules)

    @staticmethod
    async def _insert_direct(conn: Connection, plan: Plan, series: Iterable[Series]) -> None:
        """Every planned row is new (the device locks are held): COPY them into the table.

        In key order: by series (``series``, sorted), each series' rows in arrival order. Rows
        arrive round-robin over the devices, and in that order every row's entry goes to
        another leaf of the unique index, cold in the CPU's caches; in key order each one
        follows the last. That took PostgreSQL's CPU for the readings' COPY from about 24 to
        19-20 µs per message (``benchmarks/copy_order_bench.py``: the same batches in both
        orders, interleaved into twin hypertables). The grouping is ``plan_batch``'s
        (``Plan.by_series``, kept as it plans): a separate pass over the rows had cost the
        ingest about 1.3 µs per message."""
        by_series = plan.by_series
        flagged = []
        unflagged = []
        for key in series:
            for row in by_series.get(key, ()):
                if row.flags:
                    flagged.append(row.record())
                else:
                    unflagged.append(row.unflagged_record())
        try:
            if unflagged:
                await conn.copy_records_to_table(
                    "energy_readings", records=unflagged, columns=UNFLAGGED_COLUMNS
                )
            if flagged:
                await conn.copy_records_to_table(
                    "energy_readings", records=flagged, columns=READING_COLUMNS
                )
        except asyncpg.UniqueViolationError as exc:
            raise _CacheWrong from exc

    @staticmethod
    async def _insert_staged(conn: Connection, plan: Plan) -> set[tuple[str, str, datetime]]:
        """The defensive path: whatever is already stored is left alone and not credited."""
        inserted: set[tuple[str, str, datetime]] = set()
        staged = [(msg, ord_, *row.record()) for msg, ord_, row in plan.inserts]
        if staged:
            await conn.execute(_CREATE_STAGE)
            await conn.copy_records_to_table(
                "ems_ingest_stage", records=staged, columns=_STAGE_COLUMNS
            )
            for record in await conn.fetch(_INSERT):
                inserted.add((record["device_id"], record["phase"], record["ts"]))
        return inserted

    @staticmethod
    def _raw(envelope: Envelope, stored: int) -> tuple[Any, ...]:
        incoming = envelope.incoming
        if not envelope.problems and not envelope.conflicts:
            # The common case, without building the rejection list three times.
            verdict = _DUPLICATE if envelope.rows and not stored else _ACCEPTED
            topic, device = incoming.topic, envelope.device_id
            return (incoming.received_at, topic, device, incoming.payload, verdict, None, None)
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
    async def _update_devices(conn: Connection, batch: Sequence[Envelope]) -> dict[str, int]:
        """Device rows: last seen and readings version, status, command acks. Returns the
        new readings version of every device with readings in the batch."""
        seen: dict[str, datetime] = {}
        last_seen = seen.get
        for envelope in batch:
            device = envelope.device_id
            if envelope.rows and device is not None:
                at = envelope.incoming.received_at
                last = last_seen(device)
                if last is None or (at is not last and at > last):
                    seen[device] = at
        versions: dict[str, int] = {}
        if seen:
            ids = sorted(seen)
            records = await conn.fetch(_TOUCH, ids, [seen[d] for d in ids])
            versions = {r["device_id"]: r["readings_version"] for r in records}
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
        return versions
