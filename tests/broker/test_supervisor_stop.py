"""``ems broker --mosquitto`` stops even when a database connection of its access sync is
still held (a stop that waited for it forever once outlived a test's 20 s)."""

from __future__ import annotations

import asyncio

import asyncpg

from ems_broker.mosquitto.supervisor import close_pool


async def _backend_alive(database_url: str, pid: int) -> bool:
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(100):  # the server notices the closed socket shortly
            if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid):
                return False
            await asyncio.sleep(0.05)
        return True
    finally:
        await conn.close()


async def test_close_pool_closes_a_connection_that_is_never_handed_back(
    database_url: str,
) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=0, max_size=2)
    held = await pool.acquire()  # as a listener stuck in its wait would hold it
    pid = held.get_server_pid()
    await close_pool(pool, grace=0.2)
    assert pool.is_closing()
    assert not await _backend_alive(database_url, pid)


async def test_close_pool_is_graceful_when_nothing_is_held(database_url: str) -> None:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    assert await pool.fetchval("SELECT 1") == 1
    await close_pool(pool)
    assert pool.is_closing()
