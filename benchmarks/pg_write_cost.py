"""PostgreSQL's CPU per message for the ingest's writes alone, and what each index costs.

``uv run python -m benchmarks.pg_write_cost [--batches N] [--variant NAME ...]`` starts a
throwaway durable TimescaleDB per variant (fsync on, the embedded cluster's settings),
migrates it, and COPYs batches shaped like the ingest's under load into it: 16,667 messages
of 1,000 devices per batch, each three ``energy_readings`` rows and one 600-byte
``raw_events`` row, one transaction per batch, exactly the columns the ingest sends, the
readings in key order as the ingest sends them. It
reads the database backend's CPU time (``/proc``) around each COPY and the COMMIT and
prints µs per message: readings, audit rows, commit, and all PostgreSQL processes together.
No broker and no ingest: it isolates what the schema costs the database.

Variants (several may be given; each gets its own cluster, run one after another):

- ``schema``: the migrated schema as it is;
- ``full-device-index``: plus the index migration 0003 replaced, ``raw_events (device_id,
  received_at DESC)`` over every row;
- ``btree-time-indexes``: the time indexes as TimescaleDB creates them with a hypertable,
  B-trees on ``ts DESC`` and ``received_at DESC`` (the schema before migration 0004), in
  place of the BRIN ones;
- ``no-time-indexes``: without any time index on either hypertable;
- ``wal-init-zero-off``: ``wal_init_zero = off``, so new WAL segments are not zero-filled
  first (a fresh cluster creates every segment it writes; one that has run a while
  recycles them);
- ``arrival-order``: the readings COPYed in the order their messages arrive (round-robin
  over the devices) instead of in key order (device, phase, ts), as the ingest sent them
  before it grouped each batch's rows by series.

Beside the CPU it prints the WAL written per message (``pg_stat_wal``, since the cluster
started, so the migrations are a small share of it).

The backend's cost per row grows as the chunk's indexes grow, so compare variants with the
same ``--batches``; runs on this shared 2-core VM move by 10-20 % from one to the next.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from benchmarks.procmem import tree_cpu_seconds
from ems_platform.ingest.envelope import UNFLAGGED_COLUMNS
from ems_timescale import LocalCluster, migrate

logger = logging.getLogger("benchmarks.pg_write_cost")

MESSAGES = 16_667  # one 50,000-row batch of 3-phase messages
DEVICES = 1_000
RAW_COLUMNS = ("received_at", "topic", "device_id", "payload", "verdict", "reason", "detail")
PAYLOAD = b'{"v":1,"ts":"2026-11-23T10:00:00.000Z","seq":1,"boot":"b1","phases":{' + (
    b"x" * 520 + b"}}"
)
VARIANTS: dict[str, tuple[str, ...]] = {
    "schema": (),
    "full-device-index": (
        "CREATE INDEX raw_events_device_idx ON raw_events (device_id, received_at DESC)",
    ),
    "btree-time-indexes": (
        "DROP INDEX energy_readings_ts_brin",
        "DROP INDEX raw_events_received_at_brin",
        "CREATE INDEX energy_readings_ts_idx ON energy_readings (ts DESC)",
        "CREATE INDEX raw_events_received_at_idx ON raw_events (received_at DESC)",
    ),
    "no-time-indexes": (
        "DROP INDEX energy_readings_ts_brin",
        "DROP INDEX raw_events_received_at_brin",
    ),
    "wal-init-zero-off": (
        "ALTER SYSTEM SET wal_init_zero = off",
        "SELECT pg_reload_conf()",
    ),
    "arrival-order": (),
}
#: Variants whose readings go in arrival order rather than the ingest's key order.
ARRIVAL_ORDER = {"arrival-order"}
_TICKS = os.sysconf("SC_CLK_TCK")


def _backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text()
    rest = fields[fields.rindex(")") + 2 :].split()
    return (int(rest[11]) + int(rest[12])) / _TICKS


def _batch(
    number: int, start: datetime, *, key_order: bool = True
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    readings: list[tuple[object, ...]] = []
    raw: list[tuple[object, ...]] = []
    rounds = MESSAGES // DEVICES + 1
    for m in range(MESSAGES):
        device = f"bench-{m % DEVICES:05d}"
        seq = number * rounds + m // DEVICES
        ts = start + timedelta(seconds=seq)
        now = datetime.now(UTC)
        for phase in "ABC":
            readings.append(
                (device, phase, ts, 230.4, 4.98, 1102.5, 210.0, 1122.3, 0.98, 1.2, 3.4,
                 seq * 0.001, 0.001, seq, "b1", now)
            )  # fmt: skip
        raw.append((now, f"ems/{device}/telemetry", device, PAYLOAD, "accepted", None, None))
    if key_order:  # as PgReadingStore._insert_direct sends them
        readings.sort(key=lambda row: (row[0], row[1], row[2]))
    return readings, raw


async def run_variant(name: str, batches: int, workdir: Path) -> dict[str, float]:
    async with LocalCluster(workdir / name, durable=True) as cluster:
        await migrate(cluster.dsn())
        conn = await asyncpg.connect(cluster.dsn())
        try:
            for statement in VARIANTS[name]:
                await conn.execute(statement)
            postmaster = int((workdir / name / "postmaster.pid").read_text().split()[0])
            backend = await conn.fetchval("SELECT pg_backend_pid()")
            start = datetime(2026, 11, 23, 10, tzinfo=UTC)
            parts = {"readings": 0.0, "raw_events": 0.0, "commit": 0.0}
            per_batch: list[float] = []
            cluster_before = tree_cpu_seconds(postmaster)
            for number in range(batches):
                readings, raw = _batch(number, start, key_order=name not in ARRIVAL_ORDER)
                began = _backend_cpu(backend)
                transaction = conn.transaction()
                await transaction.start()
                await conn.copy_records_to_table(
                    "energy_readings", records=readings, columns=UNFLAGGED_COLUMNS
                )
                after_readings = _backend_cpu(backend)
                await conn.copy_records_to_table("raw_events", records=raw, columns=RAW_COLUMNS)
                after_raw = _backend_cpu(backend)
                await transaction.commit()
                ended = _backend_cpu(backend)
                parts["readings"] += after_readings - began
                parts["raw_events"] += after_raw - after_readings
                parts["commit"] += ended - after_raw
                per_batch.append((ended - began) / MESSAGES * 1e6)
                logger.info("%s: batch %d/%d", name, number + 1, batches)
            cluster_cpu = tree_cpu_seconds(postmaster) - cluster_before
            wal = await conn.fetchrow("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal")
            if wal is None:
                raise RuntimeError("pg_stat_wal returned no row")
            stored = await conn.fetchval("SELECT count(*) FROM energy_readings")
            audited = await conn.fetchval("SELECT count(*) FROM raw_events")
            if (stored, audited) != (3 * MESSAGES * batches, MESSAGES * batches):
                raise RuntimeError(f"{name}: stored {stored} readings and {audited} audit rows")
        finally:
            await conn.close()
    messages = MESSAGES * batches
    result = {key: value / messages * 1e6 for key, value in parts.items()}
    result["all postgres processes"] = cluster_cpu / messages * 1e6
    result["first batch"] = per_batch[0]
    result["last batch"] = per_batch[-1]
    result["median batch"] = statistics.median(per_batch)
    # Since the cluster started (migrations included, a small share): WAL per message.
    result["WAL bytes"] = wal["wal_bytes"] / messages
    result["WAL records"] = wal["wal_records"] / messages
    result["WAL full-page images"] = wal["wal_fpi"] / messages
    return result


async def main_async(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="ems-pg-write-cost-"))
    workdir.chmod(0o755)  # the postgres OS user must reach the data directories
    try:
        results = {}
        for name in args.variant:
            started = time.monotonic()
            results[name] = await run_variant(name, args.batches, workdir)
            logger.info("%s done in %.0f s", name, time.monotonic() - started)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    keys = list(next(iter(results.values())))
    width = max(len(k) for k in keys) + 2
    print(
        f"\nbackend CPU, µs per message, and WAL per message "
        f"({args.batches} batches of {MESSAGES} messages)"
    )
    print(" " * width + "".join(f"{name:>20}" for name in results))
    for key in keys:
        print(f"{key:<{width}}" + "".join(f"{results[n][key]:>20.2f}" for n in results))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join((__doc__ or "").split("\n\n")[1:]),
    )
    parser.add_argument("--batches", type=int, default=12, help="batches per variant")
    parser.add_argument(
        "--variant",
        action="append",
        choices=sorted(VARIANTS),
        help="repeatable; default: schema and btree-time-indexes",
    )
    args = parser.parse_args()
    args.variant = args.variant or ["schema", "btree-time-indexes"]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
