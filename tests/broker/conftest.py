"""Shared set-up of the broker tests: tokens in the broker's database, clients cleaned up."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import asyncpg
import pytest

from ems_access import AclRule, Role, create_token
from tests.broker.clients import Client
from tests.support.ems_broker import EmsBrokerProcess

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
MakeToken: TypeAlias = Callable[..., Awaitable[str]]
MakeClient: TypeAlias = Callable[..., Client]


@pytest.fixture
async def make_token(db_pool: Pool) -> MakeToken:
    async def make(
        role: Role, device_id: str | None = None, acl: list[AclRule] | None = None
    ) -> str:
        if device_id is not None:
            await db_pool.execute(
                "INSERT INTO devices (device_id) VALUES ($1) ON CONFLICT DO NOTHING", device_id
            )
        _, token = await create_token(
            db_pool, role=role, label=f"test {role}", device_id=device_id, acl=acl
        )
        return token

    return make


@pytest.fixture
async def clients(ems_broker: EmsBrokerProcess) -> AsyncIterator[MakeClient]:
    made: list[Client] = []

    def make(client_id: str, **kwargs: Any) -> Client:
        client = Client(ems_broker.port, client_id, **kwargs)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            client.close()
