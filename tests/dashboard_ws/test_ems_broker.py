"""The adapter on the built-in broker, which authenticates it by its service token."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiomqtt
import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect

from ems_access import store
from ems_access.tokens import generate_token
from tests.dashboard_ws.conftest import (
    WAIT_S,
    AdapterFactory,
    Tokens,
    protocols,
    recv_json,
    subscribe,
)
from tests.dashboard_ws.samples import status, telemetry
from tests.support.ems_broker import EmsBrokerProcess


async def test_device_to_browser_through_the_ems_broker(
    ems_broker_factory: Callable[..., EmsBrokerProcess],
    adapter_factory: AdapterFactory,
    db_pool: asyncpg.Pool[asyncpg.Record],
    tokens: Tokens,
) -> None:
    await db_pool.execute("INSERT INTO devices (device_id) VALUES ('dev1'), ('dev2')")
    _, dev1_token = await store.create_token(db_pool, role="device", label="dev1", device_id="dev1")
    broker = ems_broker_factory()
    async with (
        adapter_factory(broker) as server,
        aiomqtt.Client(
            broker.host,
            broker.port,
            username="dev1",
            password=dev1_token,
            identifier="dev1",
            protocol=aiomqtt.ProtocolVersion.V311,
        ) as device,
    ):
        await device.publish("ems/dev1/status", status(), qos=1, retain=True)
        async with connect(
            f"{server.ws_url}/ws/dashboard/dev1",
            subprotocols=protocols(tokens.dev1_viewer),
        ) as ws:
            assert (await recv_json(ws))["topics"] == ["ems/dev1/#"]
            # The status may arrive as a replay or live, depending on which came first.
            first = await recv_json(ws)
            assert first["topic"] == "ems/dev1/status"
            assert first["payload"]["state"] == "online"
            await device.publish("ems/dev1/telemetry", telemetry(11), qos=1)
            frame = await recv_json(ws)
            assert frame["topic"] == "ems/dev1/telemetry"
            assert frame["payload"]["seq"] == 11

        async with connect(
            f"{server.ws_url}/ws", additional_headers={"Authorization": f"Bearer {tokens.viewer}"}
        ) as ws:
            answer = await subscribe(ws, "ems/+/status")
            assert answer["denied"] == []
            replay = await recv_json(ws)
            assert (replay["topic"], replay["retained"]) == ("ems/dev1/status", True)


async def test_wrong_service_token_keeps_retrying_without_leaking_it(
    ems_broker_factory: Callable[..., EmsBrokerProcess],
    adapter_factory: AdapterFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong = generate_token()
    broker = ems_broker_factory()
    async with adapter_factory(broker, service_token=wrong, wait_linked=False) as server:
        async with asyncio.timeout(WAIT_S):
            while sum("broker link" in r.getMessage() for r in caplog.records) < 2:
                await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            assert (await http.get("/healthz")).json()["mqtt"] == "connecting"
    assert wrong not in caplog.text
    assert wrong[4:] not in caplog.text
