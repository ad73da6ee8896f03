"""The ingest's CPU per message for judging and writing a batch, against a real database.

``uv run python -m benchmarks.write_path_bench [--batches N] [--devices D] [--messages M]``
starts a throwaway TimescaleDB (``LocalCluster``, not durable: only this process's CPU is
measured, and the database's flushes do not change it), migrates it, registers the devices
and then, batch after batch, does what the ingest does with a batch under load:
``Judge.judge`` of M messages (the load generator's 3-phase payload, round-robin over the
devices, each device's ``seq`` and ``ts`` rising by one per message, one receive time per
50 messages as the MQTT reader stamps them) and ``PgReadingStore.write`` of them (advisory
locks, quality plan, COPY of readings and audit rows, device updates, commit), with the
ingest's own pool (its ``timestamptz`` codec) and garbage-collector settings.

It prints this process's CPU time (``time.process_time``: user + system, so waiting on
PostgreSQL does not count) per message for the two steps, summed over the batches after
the first two (warm-up: the newest rows are read back once, caches fill). No broker and no
MQTT read path (``mqtt_read_bench`` measures that); the full pipeline is ``ingest_bench``.

On this shared 2-core VM one run moves by 5-15 % against the next: compare code versions
with several runs each, interleaved (a second checkout in a git worktree with its own
virtualenv works).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from benchmarks.bench_db import scratch_database
from benchmarks.ingest_load import Timestamps, device_ids, template
from ems_platform.ingest import pg_codecs
from ems_platform.ingest.envelope import Incoming
from ems_platform.ingest.judge import Judge
from ems_platform.ingest.pg_store import PgReadingStore

logger = logging.getLogger("benchmarks.write_path_bench")

WARMUP_BATCHES = 2
#: Messages that share a receive time, as messages read together do.
PER_READ = 50
START = datetime(2026, 11, 24, tzinfo=UTC)


@dataclass
class Result:
    messages: int
    judge_us: float
    write_us: float


def _incomings(topics: list[str], first: int, count: int, stamps: Timestamps) -> list[Incoming]:
    body = template("boot1")
    devices = len(topics)
    out = []
    now = datetime.now(UTC)
    for n in range(first, first + count):
        seq = n // devices
        if n % PER_READ == 0:
            now = datetime.now(UTC)
        payload = body % {b"ts": stamps[seq], b"seq": seq, b"e": b"%.3f" % (1.0 + seq / 1000)}
        out.append(Incoming(topics[n % devices], payload, now, False, None))
    return out


async def measure(dsn: str, *, batches: int, devices: int, messages: int) -> Result:
    """Judge and write ``batches`` batches into the migrated database at ``dsn``."""
    if batches <= WARMUP_BATCHES:
        raise ValueError(f"need more than {WARMUP_BATCHES} batches (the first are warm-up)")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2, init=pg_codecs.install)
    try:
        ids = device_ids("wp", devices)
        await pool.executemany(
            "INSERT INTO devices (device_id) VALUES ($1) ON CONFLICT DO NOTHING",
            [(i,) for i in ids],
        )
        topics = [f"ems/{i}/telemetry" for i in ids]
        stamps = Timestamps(START)
        judge, store = Judge(), PgReadingStore(pool)
        judging = writing = 0.0
        # As the ingest runs (core.gc_tuning): start-up frozen, no automatic collection.
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            for number in range(batches):
                incomings = _incomings(topics, number * messages, messages, stamps)
                started = time.process_time()
                envelopes = [judge.judge(incoming) for incoming in incomings]
                judged = time.process_time()
                stored = await store.write(envelopes)
                written = time.process_time()
                if sum(stored) != 3 * messages:
                    raise RuntimeError(f"batch {number}: stored {sum(stored)} rows")
                if number >= WARMUP_BATCHES:
                    judging += judged - started
                    writing += written - judged
                del envelopes, incomings
                gc.collect()  # between batches, outside the timing
                logger.info("batch %d/%d", number + 1, batches)
        finally:
            gc.enable()
            gc.unfreeze()
    finally:
        await pool.close()
    counted = (batches - WARMUP_BATCHES) * messages
    return Result(counted, judging / counted * 1e6, writing / counted * 1e6)


async def main_async(args: argparse.Namespace) -> Result:
    async with scratch_database("ems-write-path-bench-") as dsn:
        return await measure(
            dsn, batches=args.batches, devices=args.devices, messages=args.messages
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join((__doc__ or "").split("\n\n")[1:]),
    )
    parser.add_argument("--batches", type=int, default=14, help="batches, the first 2 warm-up")
    parser.add_argument("--devices", type=int, default=1_000, help="devices, round-robin")
    parser.add_argument(
        "--messages", type=int, default=16_667, help="messages per batch (a 50,000-row batch)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    result = asyncio.run(main_async(args))
    print(
        f"\ningest CPU per message ({result.messages} messages after warm-up, "
        f"{args.messages} per batch, {args.devices} devices)"
    )
    print(f"judge   {result.judge_us:8.2f} µs")
    print(f"write   {result.write_us:8.2f} µs")
    print(f"both    {result.judge_us + result.write_us:8.2f} µs")


if __name__ == "__main__":
    main()
