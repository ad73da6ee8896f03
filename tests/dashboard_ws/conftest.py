"""Fixtures of the dashboard adapter tests: tokens in a real database, a real broker,
the adapter served in-process on a free port, and WebSocket/MQTT client helpers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import aiomqtt
import asyncpg
import httpx
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from ems_access import store
from ems_access.rules import AclRule
from ems_access.tokens import generate_token
from ems_dashboard_ws.server import RunningServer, serving
from ems_dashboard_ws.settings import DashboardSettings
from tests.support.mosquitto import MosquittoBroker

# Generous bounds so a hung test fails with a message instead of the global timeout;
# no assertion depends on how fast anything is.
WAIT_S = 30.0


@dataclass(frozen=True)
class Tokens:
    service: str
    viewer: str
    viewer_id: UUID
    dev1_viewer: str
    dev1_viewer_id: UUID


@pytest.fixture
async def tokens(db_pool: asyncpg.Pool[asyncpg.Record]) -> Tokens:
    service = generate_token()
    await store.ensure_token(db_pool, service, role="service", label="dashboard adapter")
    viewer_principal, viewer = await store.create_token(db_pool, role="viewer", label="all")
    dev1_principal, dev1_viewer = await store.create_token(
        db_pool, role="viewer", label="dev1 only", acl=[AclRule("ems/dev1/#", "read")]
    )
    return Tokens(service, viewer, viewer_principal.token_id, dev1_viewer, dev1_principal.token_id)


AdapterFactory = Callable[..., AbstractAsyncContextManager[RunningServer]]


async def wait_until_linked(server: RunningServer) -> None:
    """Bounded polling of /healthz until the adapter's broker link is up."""
    async with httpx.AsyncClient(base_url=server.http_url) as http, asyncio.timeout(WAIT_S):
        while True:
            health = (await http.get("/healthz")).json()
            if health["mqtt"] == "connected":
                return
            await asyncio.sleep(0.05)


async def wait_for_retained(server: RunningServer, count: int) -> None:
    async with httpx.AsyncClient(base_url=server.http_url) as http, asyncio.timeout(WAIT_S):
        while (await http.get("/healthz")).json()["retained_topics"] < count:
            await asyncio.sleep(0.05)


@pytest.fixture
def adapter_factory(database_url: str, tokens: Tokens) -> AdapterFactory:
    """``async with adapter_factory(broker, **settings) as server:`` runs an adapter."""

    @asynccontextmanager
    async def start(
        broker: Any,
        *,
        service_token: str | None = None,
        wait_linked: bool = True,
        **overrides: Any,
    ) -> AsyncIterator[RunningServer]:
        settings = DashboardSettings(
            database_url=database_url,
            service_token=service_token or tokens.service,
            mqtt_host=broker.host,
            mqtt_port=broker.port,
            ws_host="127.0.0.1",
            ws_port=0,
            mqtt_backoff_initial=0.05,
            mqtt_backoff_max=0.5,
            **overrides,
        )
        async with serving(settings) as server:
            if wait_linked:
                await wait_until_linked(server)
            yield server

    return start


@pytest.fixture
async def adapter(
    adapter_factory: AdapterFactory, mosquitto_broker: MosquittoBroker
) -> AsyncIterator[RunningServer]:
    async with adapter_factory(mosquitto_broker) as server:
        yield server


@pytest.fixture
async def publisher(mosquitto_broker: MosquittoBroker) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(
        mosquitto_broker.host,
        mosquitto_broker.port,
        identifier="dashboard-test-publisher",
        protocol=aiomqtt.ProtocolVersion.V311,
    ) as client:
        yield client


def protocols(token: str) -> list[Subprotocol]:
    """What a browser offers: ``ems.v1`` and ``ems.bearer.<token>``."""
    return [Subprotocol("ems.v1"), Subprotocol(f"ems.bearer.{token}")]


async def recv_json(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(WAIT_S):
        data = json.loads(await ws.recv())
    assert isinstance(data, dict)
    return data


async def recv_type(ws: ClientConnection, kind: str) -> dict[str, Any]:
    """The next frame of ``kind``, skipping others (e.g. replays while waiting for an ack)."""
    while True:
        frame = await recv_json(ws)
        if frame["type"] == kind:
            return frame


async def subscribe(ws: ClientConnection, *topics: str) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "subscribe", "topics": list(topics)}))
    return await recv_type(ws, "subscribed")
