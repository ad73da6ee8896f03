"""Shared set-up of the broker tests: tokens in the broker's database, clients cleaned up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import asyncpg
import pytest

from ems_access import AclRule, Role, create_token
from tests.broker.clients import Client
from tests.support.ems_broker import EmsBrokerProcess
from tests.support.ems_mosquitto import EmsMosquittoProcess

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


async def _client_maker(port: int) -> AsyncIterator[MakeClient]:
    """Yield ``make(client_id, **kwargs)``: clients of the broker on ``port``, closed after."""
    made: list[Client] = []

    def make(client_id: str, **kwargs: Any) -> Client:
        client = Client(port, client_id, **kwargs)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            client.close()


@pytest.fixture
async def clients(ems_broker: EmsBrokerProcess) -> AsyncIterator[MakeClient]:
    async for make in _client_maker(ems_broker.port):
        yield make


@pytest.fixture
async def mq_clients(ems_mosquitto: EmsMosquittoProcess) -> AsyncIterator[MakeClient]:
    """Clients of ``ems broker --mosquitto``."""
    async for make in _client_maker(ems_mosquitto.port):
        yield make


@pytest.fixture
def mq_token(make_token: MakeToken, ems_mosquitto: EmsMosquittoProcess) -> MakeToken:
    """A new token, in force in the running Mosquitto."""

    async def make(*args: Any, **kwargs: Any) -> str:
        token = await make_token(*args, **kwargs)
        await asyncio.to_thread(ems_mosquitto.wait_synced)
        return token

    return make
