"""Token store against a real PostgreSQL+TimescaleDB database."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias
from uuid import uuid4

import asyncpg
import pytest

from ems_access import (
    ROLE_DEFAULTS,
    AclRule,
    InvalidRuleError,
    InvalidTokenError,
    TokenNotFoundError,
    TokenUnusableError,
    UnknownDeviceError,
    authenticate,
    create_token,
    ensure_token,
    generate_token,
    get_token,
    hash_token,
    list_tokens,
    revoke_token,
    rotate_token,
    set_acl,
)
from ems_access.store import CHANNEL

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"


async def add_device(pool: Pool, device_id: str) -> None:
    await pool.execute("INSERT INTO devices (device_id) VALUES ($1)", device_id)


async def test_create_stores_only_the_hash(db_pool: Pool) -> None:
    principal, token = await create_token(db_pool, role="viewer", label="dash")
    assert principal.rules == ROLE_DEFAULTS["viewer"]
    rows = await db_pool.fetch("SELECT * FROM tokens")
    assert len(rows) == 1
    assert rows[0]["token_hash"] == hash_token(token)
    dumped = "".join(str(value) for row in rows for value in row.values())
    assert token not in dumped
    assert token.removeprefix("ems_") not in dumped
    rule_rows = await db_pool.fetch("SELECT * FROM acl_rules")
    assert token not in "".join(str(value) for row in rule_rows for value in row.values())


async def test_authenticate_round_trip(db_pool: Pool) -> None:
    await add_device(db_pool, "dev1")
    created, token = await create_token(db_pool, role="device", label="meter", device_id="dev1")
    found = await authenticate(db_pool, token)
    assert found == created
    assert found is not None and found.device_id == "dev1"
    assert await authenticate(db_pool, generate_token()) is None
    assert await authenticate(db_pool, "") is None
    last_used = await db_pool.fetchval("SELECT last_used_at FROM tokens")
    assert last_used is not None


async def test_connection_and_pool_both_work(db_pool: Pool, database_url: str) -> None:
    async with db_pool.acquire() as conn:
        _, token = await create_token(conn, role="viewer", label="via pooled connection")
        assert await authenticate(conn, token) is not None
    raw = await asyncpg.connect(database_url)
    try:
        async with raw.transaction():
            # Inside a caller's transaction the store nests (savepoint) instead of committing.
            _, other = await create_token(raw, role="viewer", label="inside a transaction")
        assert await authenticate(raw, token) is not None
        assert await authenticate(db_pool, other) is not None
    finally:
        await raw.close()


async def test_device_token_needs_a_registered_device(db_pool: Pool) -> None:
    with pytest.raises(InvalidTokenError):
        await create_token(db_pool, role="device", label="x")
    with pytest.raises(UnknownDeviceError):
        await create_token(db_pool, role="device", label="x", device_id="ghost")
    with pytest.raises(InvalidTokenError):
        await create_token(db_pool, role="device", label="x", device_id="bad/id")
    with pytest.raises(InvalidTokenError):
        await create_token(db_pool, role="superuser", label="x")  # type: ignore[arg-type]
    assert await db_pool.fetchval("SELECT count(*) FROM tokens") == 0


async def test_custom_acl_is_stored_in_order(db_pool: Pool) -> None:
    acl = [AclRule("ems/secret/#", "deny"), AclRule("ems/#", "read")]
    _, token = await create_token(db_pool, role="viewer", label="x", acl=acl)
    found = await authenticate(db_pool, token)
    assert found is not None
    assert found.rules == tuple(acl)
    assert not found.can("read", "ems/secret/a")
    assert found.can("read", "ems/public/a")


async def test_revoke(db_pool: Pool) -> None:
    created, token = await create_token(db_pool, role="operator", label="ops")
    assert await revoke_token(db_pool, created.token_id)
    assert await authenticate(db_pool, token) is None
    assert not await revoke_token(db_pool, created.token_id)
    assert not await revoke_token(db_pool, uuid4())
    info = await get_token(db_pool, created.token_id)
    assert info is not None and info.revoked


async def test_expiry(db_pool: Pool) -> None:
    with pytest.raises(InvalidTokenError):
        await create_token(db_pool, role="viewer", label="naive", expires_at=datetime(2030, 1, 1))
    _, past = await create_token(
        db_pool, role="viewer", label="old", expires_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    assert await authenticate(db_pool, past) is None
    future_at = datetime.now(UTC) + timedelta(hours=1)
    created, future = await create_token(db_pool, role="viewer", label="new", expires_at=future_at)
    found = await authenticate(db_pool, future)
    assert found is not None and found.expires_at == created.expires_at


async def test_ensure_token_is_idempotent(db_pool: Pool) -> None:
    token = generate_token()
    first = await ensure_token(db_pool, token, role="admin", label="bootstrap")
    second = await ensure_token(db_pool, token, role="admin", label="bootstrap")
    assert first == second
    assert await db_pool.fetchval("SELECT count(*) FROM tokens") == 1
    assert await db_pool.fetchval("SELECT count(*) FROM acl_rules") == len(ROLE_DEFAULTS["admin"])
    assert await authenticate(db_pool, token) == first


async def test_ensure_token_concurrently(db_pool: Pool) -> None:
    token = generate_token()
    results = await asyncio.gather(
        *(ensure_token(db_pool, token, role="service", label="ingest") for _ in range(4))
    )
    assert len({p.token_id for p in results}) == 1
    assert await db_pool.fetchval("SELECT count(*) FROM tokens") == 1


async def test_ensure_token_keeps_edited_rules_unless_role_changes(db_pool: Pool) -> None:
    token = generate_token()
    installed = await ensure_token(db_pool, token, role="service", label="svc")
    custom = [AclRule("ems/+/telemetry", "read")]
    await set_acl(db_pool, installed.token_id, custom)
    again = await ensure_token(db_pool, token, role="service", label="svc renamed")
    assert again.rules == tuple(custom)
    assert again.label == "svc renamed"
    promoted = await ensure_token(db_pool, token, role="admin", label="svc")
    assert promoted.role == "admin"
    assert promoted.rules == ROLE_DEFAULTS["admin"]


async def test_ensure_token_refuses_weak_revoked_and_device(db_pool: Pool) -> None:
    with pytest.raises(InvalidTokenError):
        await ensure_token(db_pool, "admin", role="admin", label="weak")
    with pytest.raises(InvalidTokenError):
        await ensure_token(db_pool, generate_token(), role="device", label="x")
    token = generate_token()
    installed = await ensure_token(db_pool, token, role="admin", label="x")
    await revoke_token(db_pool, installed.token_id)
    with pytest.raises(TokenUnusableError):
        await ensure_token(db_pool, token, role="admin", label="x")


async def test_set_acl(db_pool: Pool) -> None:
    created, token = await create_token(db_pool, role="viewer", label="x")
    await set_acl(db_pool, created.token_id, [AclRule("ems/dev1/#", "read")])
    found = await authenticate(db_pool, token)
    assert found is not None
    assert found.can("read", "ems/dev1/telemetry")
    assert not found.can("read", "ems/dev2/telemetry")
    await set_acl(db_pool, created.token_id, [])
    found = await authenticate(db_pool, token)
    assert found is not None and not found.can("read", "ems/dev1/telemetry")
    with pytest.raises(TokenNotFoundError):
        await set_acl(db_pool, uuid4(), [])
    with pytest.raises(InvalidRuleError):
        await set_acl(db_pool, created.token_id, [("ems/#", "read")])  # type: ignore[list-item]


async def test_rotate(db_pool: Pool) -> None:
    created, old = await create_token(db_pool, role="viewer", label="x")
    new = await rotate_token(db_pool, created.token_id)
    assert new != old
    assert await authenticate(db_pool, old) is None
    found = await authenticate(db_pool, new)
    assert found is not None and found.token_id == created.token_id
    await revoke_token(db_pool, created.token_id)
    with pytest.raises(TokenNotFoundError):
        await rotate_token(db_pool, created.token_id)


async def test_list_tokens(db_pool: Pool) -> None:
    await add_device(db_pool, "dev1")
    a, _ = await create_token(db_pool, role="admin", label="a")
    b, _ = await create_token(db_pool, role="device", label="b", device_id="dev1")
    await revoke_token(db_pool, a.token_id)
    listed = await list_tokens(db_pool)
    assert [info.id for info in listed] == [a.token_id, b.token_id]
    assert listed[1].rules == ROLE_DEFAULTS["device"]
    assert listed[1].device_id == "dev1"
    assert [info.id for info in await list_tokens(db_pool, include_revoked=False)] == [b.token_id]


async def test_a_broken_rule_in_the_database_disables_the_token(db_pool: Pool) -> None:
    created, token = await create_token(db_pool, role="viewer", label="x")
    await db_pool.execute(
        "UPDATE acl_rules SET topic = 'ems/#/broken' WHERE token_id = $1", created.token_id
    )
    assert await authenticate(db_pool, token) is None


async def test_changes_are_notified(db_pool: Pool, database_url: str) -> None:
    received: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(database_url)

    def on_notify(_conn: Any, _pid: int, _channel: str, payload: object) -> None:
        received.put_nowait(str(payload))

    await listener.add_listener(CHANNEL, on_notify)
    try:
        created, _ = await create_token(db_pool, role="viewer", label="x")
        assert await asyncio.wait_for(received.get(), 10) == str(created.token_id)
        await set_acl(db_pool, created.token_id, [])
        assert await asyncio.wait_for(received.get(), 10) == str(created.token_id)
        await revoke_token(db_pool, created.token_id)
        assert await asyncio.wait_for(received.get(), 10) == str(created.token_id)
    finally:
        await listener.close()
