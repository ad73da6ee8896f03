"""Fixtures of the conformance suite: brokers of each kind, tokens, clients, a log scan.

Every test runs once per broker kind (``tests/support/brokers.py``). Tokens are created
straight in the broker's database with ``ems_access``; at teardown the logs of every broker
the test started are scanned for each token's plaintext (ARCHITECTURE section 3: tokens
never appear in logs).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias
from uuid import UUID

import asyncpg
import pytest

from ems_access import AclRule, Role, create_token, notify_access_changed, revoke_token, set_acl
from tests.conformance.mqtt import Client
from tests.support.brokers import BrokerFactory, BrokerUnderTest

Pool: TypeAlias = "asyncpg.Pool[asyncpg.Record]"
StartBroker: TypeAlias = Callable[..., BrokerUnderTest]
MakeClient: TypeAlias = Callable[..., Client]


@dataclass(frozen=True)
class Issued:
    id: UUID
    token: str


@dataclass
class Tokens:
    """Token changes straight in the database, each followed by ``synced()`` of every broker
    started, so a test never races a broker that learns of changes asynchronously."""

    pool: Pool
    brokers: list[BrokerUnderTest]
    issued: list[str] = field(default_factory=list)

    async def sync(self) -> None:
        for broker in self.brokers:
            await broker.synced()

    async def make(
        self,
        role: Role,
        *,
        device_id: str | None = None,
        acl: list[AclRule] | None = None,
        expires_at: datetime | None = None,
    ) -> Issued:
        if device_id is not None:
            await self.pool.execute(
                "INSERT INTO devices (device_id) VALUES ($1) ON CONFLICT DO NOTHING", device_id
            )
        principal, token = await create_token(
            self.pool,
            role=role,
            label=f"conformance {role}",
            device_id=device_id,
            acl=acl,
            expires_at=expires_at,
        )
        self.issued.append(token)
        await self.sync()
        return Issued(principal.token_id, token)

    async def revoke(self, issued: Issued) -> None:
        await revoke_token(self.pool, issued.id)
        await self.sync()

    async def expire(self, issued: Issued) -> None:
        await self.pool.execute(
            "UPDATE tokens SET expires_at = now() - interval '1 second' WHERE id = $1", issued.id
        )
        await notify_access_changed(self.pool, issued.id)
        await self.sync()

    async def set_acl(self, issued: Issued, rules: list[AclRule]) -> None:
        await set_acl(self.pool, issued.id, rules)
        await self.sync()


@pytest.fixture
def started() -> list[BrokerUnderTest]:
    return []


@pytest.fixture
def start_broker(
    broker_under_test_factory: BrokerFactory, started: list[BrokerUnderTest]
) -> StartBroker:
    def start(**env: str) -> BrokerUnderTest:
        broker = broker_under_test_factory(**env)
        started.append(broker)
        return broker

    return start


@pytest.fixture
def broker(start_broker: StartBroker) -> BrokerUnderTest:
    return start_broker()


@pytest.fixture
async def tokens(
    db_pool: Pool,
    broker_under_test_factory: BrokerFactory,  # set up first, so its logs outlive this scan
    started: list[BrokerUnderTest],
) -> AsyncIterator[Tokens]:
    made = Tokens(db_pool, started)
    yield made
    for running in started:
        logs = running.logs()
        leaked = [n for n, token in enumerate(made.issued) if token in logs]
        assert not leaked, f"{running.kind} logged the plaintext of token(s) {leaked}"


@pytest.fixture
def clients() -> Iterator[MakeClient]:
    made: list[Client] = []

    def make(broker: BrokerUnderTest, client_id: str, **kwargs: Any) -> Client:
        client = Client(broker.port, client_id, host=broker.host, **kwargs)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            client.close()
