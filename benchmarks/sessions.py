"""Memory per idle device session: broker RSS before and after N sessions connect."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from benchmarks.bench_db import Credentials
from benchmarks.brokers import BrokerProcess
from benchmarks.idle_sessions import SessionPool
from benchmarks.procmem import settled_rss_kib, tree_memory

logger = logging.getLogger(__name__)


async def measure_sessions(
    broker: BrokerProcess,
    credentials: Credentials,
    levels: Sequence[int],
    *,
    concurrency: int,
    subscribe: bool,
) -> dict[str, Any]:
    """Open sessions up to each level in turn (1,000, then 10,000 in all) on one broker.

    A warm-up batch first connects and leaves, so code paths and caches the first
    connections fill are in the baseline rather than charged to the measured sessions.
    """
    warm = SessionPool(broker.host, broker.port, concurrency=concurrency, subscribe=subscribe)
    await warm.open(credentials.warmup)
    await warm.close()
    baseline = await settled_rss_kib(broker.pid)
    result: dict[str, Any] = {
        "baseline_rss_kib": baseline,
        "baseline_processes": [vars(p) for p in tree_memory(broker.pid)],
        "levels": [],
    }
    pool = SessionPool(broker.host, broker.port, concurrency=concurrency, subscribe=subscribe)
    try:
        opened = 0
        total_seconds = 0.0
        for level in sorted(levels):
            batch = credentials.devices[opened:level]
            seconds = await pool.open(batch)
            opened = level
            total_seconds += seconds
            rss = await settled_rss_kib(broker.pid)
            alive = pool.alive
            per_session = (rss - baseline) / alive if alive else None
            logger.info(
                "%s: %d sessions alive (%d failed), RSS %d KiB, %d connected in %.1f s",
                broker.kind,
                alive,
                len(pool.failures),
                rss,
                len(batch),
                seconds,
            )
            result["levels"].append(
                {
                    "sessions": level,
                    "alive": alive,
                    "failed": len(pool.failures),
                    "failures_sample": pool.failures[:3],
                    "batch": len(batch),
                    "batch_connect_seconds": round(seconds, 2),
                    "connect_seconds_total": round(total_seconds, 2),
                    "connects_per_s": round(len(batch) / seconds, 1) if seconds else None,
                    "rss_kib": rss,
                    "processes": [vars(p) for p in tree_memory(broker.pid)],
                    "kib_per_session": round(per_session, 2) if per_session else None,
                }
            )
    finally:
        await pool.close()
    return result
