"""benchmarks.write_path_bench judges and writes real batches into a real database; here with
a few small batches, for correctness only."""

from __future__ import annotations

import gc

import asyncpg
import pytest

from benchmarks.write_path_bench import measure


async def test_every_batch_is_stored_and_only_the_warmed_up_ones_are_timed(
    database_url: str,
) -> None:
    result = await measure(database_url, batches=4, devices=5, messages=40)
    assert result.messages == 2 * 40  # batches 3 and 4
    assert result.judge_us > 0 and result.write_us > 0
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM energy_readings") == 4 * 40 * 3
        assert await conn.fetchval("SELECT count(*) FROM raw_events") == 4 * 40
        # Every device's seq rose by one per message, so no gaps were flagged.
        assert not await conn.fetchval(
            "SELECT count(*) FROM energy_readings WHERE 'gap' = ANY(flags)"
        )
    finally:
        await conn.close()
    assert gc.isenabled()


async def test_warm_up_batches_alone_are_refused(database_url: str) -> None:
    with pytest.raises(ValueError, match="warm-up"):
        await measure(database_url, batches=2, devices=5, messages=10)
