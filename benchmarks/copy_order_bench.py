"""PostgreSQL's CPU for the readings' COPY by the order of the rows: arrival, key, device.

``uv run python -m benchmarks.copy_order_bench [--batches N]`` starts a throwaway durable
TimescaleDB (the embedded cluster's settings), migrates it, and makes two twins of
``energy_readings`` (same columns, unique key and BRIN time index, hypertables). Each
batch (``pg_write_cost``'s: 16,667 messages of 1,000 devices, 50,000 rows) is COPYed three
times, one transaction each, in three orders:

- ``arrival``: as the messages arrive, round-robin over the devices;
- ``key``: sorted by (device_id, phase, ts), as ``PgReadingStore`` sends them;
- ``device``: grouped by device only, each device's rows in arrival order (phases mixed).

The three orders take turns at the three tables and at going first, so each order meets
each table and each position equally often; the backend's CPU time (``/proc``) of each
COPY and its COMMIT is summed per order over the batches after the first three, and
printed in µs per message. Measuring the orders side by side in one cluster is what makes
the comparison hold on this VM, whose speed drifts by 10-20 % between runs that follow one
another.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

import asyncpg

from benchmarks.bench_db import scratch_database
from benchmarks.pg_write_cost import MESSAGES, _backend_cpu, _batch
from ems_platform.ingest.envelope import UNFLAGGED_COLUMNS

logger = logging.getLogger("benchmarks.copy_order_bench")

TABLES = ("energy_readings", "readings_twin_1", "readings_twin_2")
WARMUP_BATCHES = 3
Rows = list[tuple[object, ...]]


def _by_device(rows: Rows) -> Rows:
    groups: dict[object, Rows] = {}
    for row in rows:
        groups.setdefault(row[0], []).append(row)
    return [row for device in sorted(groups, key=str) for row in groups[device]]


ORDERS: dict[str, Callable[[Rows], Rows]] = {
    "arrival": lambda rows: rows,
    "key": lambda rows: sorted(rows, key=lambda row: (str(row[0]), str(row[1]), row[2])),
    "device": _by_device,
}


async def measure(dsn: str, batches: int) -> dict[str, float]:
    """µs of backend CPU per message for each order, over the batches after warm-up."""
    if batches <= WARMUP_BATCHES:
        raise ValueError(f"need more than {WARMUP_BATCHES} batches (the first are warm-up)")
    conn = await asyncpg.connect(dsn)
    try:
        for twin in TABLES[1:]:
            # INCLUDING ALL copies the unique key and the BRIN index of migration 0004.
            await conn.execute(f"CREATE TABLE {twin} (LIKE energy_readings INCLUDING ALL)")
            await conn.execute(
                f"SELECT create_hypertable('{twin}', by_range('ts', INTERVAL '1 day'), "
                "create_default_indexes => false)"
            )
        backend = await conn.fetchval("SELECT pg_backend_pid()")
        start = datetime(2026, 11, 23, 10, tzinfo=UTC)
        names = list(ORDERS)
        spent = dict.fromkeys(names, 0.0)
        for number in range(batches):
            arrival, _ = _batch(number, start, key_order=False)
            turn = number % len(names)
            for position, name in enumerate(names[turn:] + names[:turn]):
                table = TABLES[(position + number) % len(TABLES)]
                rows = ORDERS[name](arrival)
                began = _backend_cpu(backend)
                async with conn.transaction():
                    await conn.copy_records_to_table(table, records=rows, columns=UNFLAGGED_COLUMNS)
                if number >= WARMUP_BATCHES:
                    spent[name] += _backend_cpu(backend) - began
            logger.info("batch %d/%d", number + 1, batches)
        for table in TABLES:
            stored = await conn.fetchval(f"SELECT count(*) FROM {table}")
            if stored != 3 * MESSAGES * batches:
                raise RuntimeError(f"{table} holds {stored} rows")
    finally:
        await conn.close()
    messages = MESSAGES * (batches - WARMUP_BATCHES)
    return {name: seconds / messages * 1e6 for name, seconds in spent.items()}


async def main_async(batches: int) -> dict[str, float]:
    async with scratch_database("ems-copy-order-bench-", durable=True) as dsn:
        return await measure(dsn, batches)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join((__doc__ or "").split("\n\n")[1:]),
    )
    parser.add_argument("--batches", type=int, default=33, help="batches, the first 3 warm-up")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    result = asyncio.run(main_async(args.batches))
    print(f"\nbackend CPU of the readings' COPY + COMMIT, µs per message ({MESSAGES} per batch)")
    for name, us in result.items():
        print(f"{name:8s} {us:7.2f}")


if __name__ == "__main__":
    main()
