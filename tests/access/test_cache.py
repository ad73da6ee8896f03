"""AccessCache: TTL caching, NOTIFY-driven invalidation, listener reconnects."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeAlias
from uuid import UUID

import asyncpg

from ems_access import (
    AccessCache,
    AclRule,
    create_token,
    ensure_token,
    generate_token,
    revoke_token,
    set_acl,
)

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
WAIT_S = 30.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Bounded polling for a condition another task or process brings about."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_cached_answer_survives_silent_changes_until_ttl(db_pool: Pool) -> None:
    clock = FakeClock()
    cache = AccessCache(db_pool, ttl=60, clock=clock)  # not entered: no NOTIFY listener
    created, token = await create_token(db_pool, role="viewer", label="x")
    assert await cache.authenticate(token) == created
    # A change behind the store's back (no NOTIFY) is only seen after the TTL.
    await db_pool.execute("UPDATE tokens SET revoked_at = now() WHERE id = $1", created.token_id)
    assert await cache.authenticate(token) == created
    clock.now += 61
    assert await cache.authenticate(token) is None


async def test_unknown_tokens_are_cached_briefly(db_pool: Pool) -> None:
    clock = FakeClock()
    cache = AccessCache(db_pool, negative_ttl=2, clock=clock)
    token = generate_token()
    assert await cache.authenticate(token) is None
    await ensure_token(db_pool, token, role="viewer", label="late")
    assert await cache.authenticate(token) is None
    clock.now += 3
    assert await cache.authenticate(token) is not None


async def test_invalidate(db_pool: Pool) -> None:
    cache = AccessCache(db_pool)
    created, token = await create_token(db_pool, role="viewer", label="x")
    assert await cache.authenticate(token) is not None
    await db_pool.execute("UPDATE tokens SET revoked_at = now() WHERE id = $1", created.token_id)
    cache.invalidate(created.token_id)
    assert await cache.authenticate(token) is None
    assert cache.peek_hash("0" * 64) is None


async def test_concurrent_lookups_share_one_answer(db_pool: Pool) -> None:
    cache = AccessCache(db_pool)
    created, token = await create_token(db_pool, role="viewer", label="x")
    answers = await asyncio.gather(*(cache.authenticate(token) for _ in range(50)))
    assert all(answer == created for answer in answers)


async def test_notify_invalidates_live(db_pool: Pool) -> None:
    changes: list[UUID | None] = []
    async with AccessCache(db_pool, ttl=3600) as cache:
        cache.on_change(changes.append)
        await asyncio.wait_for(cache.wait_listening(), WAIT_S)
        created, token = await create_token(db_pool, role="viewer", label="x")
        principal = await cache.authenticate(token)
        assert principal is not None and principal.can("read", "ems/dev1/telemetry")

        await set_acl(db_pool, created.token_id, [AclRule("ems/dev2/#", "read")])

        async def acl_applied() -> bool:
            found = await cache.authenticate(token)
            return found is not None and not found.can("read", "ems/dev1/telemetry")

        await eventually(acl_applied, "the ACL change to reach the cache")
        await revoke_token(db_pool, created.token_id)

        async def revoked() -> bool:
            return await cache.authenticate(token) is None

        await eventually(revoked, "the revocation to reach the cache")
        assert created.token_id in changes


async def test_listener_reconnects_after_losing_its_connection(db_pool: Pool) -> None:
    async with AccessCache(db_pool, ttl=3600) as cache:
        await asyncio.wait_for(cache.wait_listening(), WAIT_S)
        killed = await db_pool.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
        assert killed == 1

        async def relistening() -> bool:
            return cache.listening and (
                await db_pool.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                )
                == 1
            )

        await eventually(relistening, "the listener to come back")
        created, token = await create_token(db_pool, role="viewer", label="x")
        assert await cache.authenticate(token) is not None
        await revoke_token(db_pool, created.token_id)

        async def revoked() -> bool:
            return await cache.authenticate(token) is None

        await eventually(revoked, "the revocation after reconnect")
