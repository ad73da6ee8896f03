"""Revocation latency: time from a token's revocation commit to its live MQTT session closing.

``uv run python -m benchmarks.revocation_bench`` starts a throwaway PostgreSQL+TimescaleDB,
then, for each broker, opens one authenticated device session per token, revokes the tokens
one at a time (``ems_access.store.revoke_token``, which NOTIFYs the brokers) and times how
long each session takes to see its socket closed. Issue 3's goal is under 1 s; this prints
the percentiles instead of asserting them (tests never hold timing thresholds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import statistics
import tempfile
import time
from pathlib import Path
from uuid import UUID

import asyncpg

from benchmarks.bench_db import Credentials, Device, create_credentials, throwaway_database
from benchmarks.brokers import KINDS, running_broker
from benchmarks.idle_sessions import IdleSession, open_session
from ems_access.store import revoke_token

logger = logging.getLogger("benchmarks.revocation_bench")


async def _token_ids(dsn: str, device_ids: list[str]) -> dict[str, UUID]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT device_id, id FROM tokens WHERE device_id = ANY($1::text[])", device_ids
        )
    finally:
        await conn.close()
    return {row["device_id"]: row["id"] for row in rows}


async def _closed(session: IdleSession) -> None:
    """Returns when the broker closes the session's socket (EOF or reset)."""
    with contextlib.suppress(ConnectionError):
        while await session.reader.read(1024):
            pass


async def measure(
    kind: str, dsn: str, credentials: Credentials, devices: list[Device], workdir: Path
) -> list[float]:
    ids = await _token_ids(dsn, [d.device_id for d in devices])
    latencies: list[float] = []
    async with running_broker(kind, workdir / kind, dsn, credentials) as broker:
        opened = [await open_session("127.0.0.1", broker.port, device) for device in devices]
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
        try:
            for session in opened:
                watcher = asyncio.create_task(_closed(session), name=f"watch-{session.device_id}")
                await revoke_token(pool, ids[session.device_id])
                started = time.perf_counter()
                try:
                    await asyncio.wait_for(watcher, timeout=30)
                    latencies.append(time.perf_counter() - started)
                except TimeoutError:
                    logger.error(
                        "%s: session of %s still open 30 s after revocation",
                        kind,
                        session.device_id,
                    )
                    latencies.append(float("inf"))
                session.writer.close()
        finally:
            await pool.close()
    return latencies


def _row(kind: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return (
        f"{kind:<10} {len(ms):>5} {q[49]:>9.1f} {q[94]:>9.1f} {q[98]:>9.1f} {ms[-1]:>9.1f}"
        f" {sum(v <= 1000 for v in ms):>6}/{len(ms)}"
    )


async def main_async(args: argparse.Namespace) -> int:
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="ems-revocation-bench-", dir="/tmp") as tmp:
        root = Path(tmp)
        root.chmod(0o711)  # the embedded PostgreSQL runs as `postgres` when we are root
        async with throwaway_database(root / "pg") as dsn:
            # One set of tokens for the run; each broker revokes its own slice of them.
            credentials = await create_credentials(
                dsn, devices=args.sessions * len(args.brokers), warmup=0
            )
            for n, kind in enumerate(args.brokers):
                devices = list(credentials.devices[n * args.sessions : (n + 1) * args.sessions])
                logger.info("%s: revoking %d live sessions one by one", kind, args.sessions)
                results[kind] = await measure(kind, dsn, credentials, devices, root)
    print("\nrevocation -> session closed (ms)")
    print(f"{'broker':<10} {'n':>5} {'p50':>9} {'p95':>9} {'p99':>9} {'max':>9} {'<=1 s':>8}")
    for kind, values in results.items():
        print(_row(kind, values))
    return 0 if all(max(v) <= 1.0 for v in results.values()) else 1


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.revocation_bench",
        description="Time from revoking a token to its live MQTT session being closed, for "
        "each broker. Exit status 1 if any session took longer than the 1 s goal.",
    )
    parser.add_argument("--sessions", type=int, default=100, help="sessions revoked per broker")
    parser.add_argument(
        "--brokers",
        type=lambda s: [k for k in s.split(",") if k],
        default=["amqtt", "mosquitto"],
        help=f"comma list of {', '.join(k for k in KINDS if k != 'mosquitto-plain')}",
    )
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
