"""The platform behind the EMS broker: token logins and ACLs on both sides of the ingest."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiomqtt
import httpx

from ems_access.tokens import generate_token
from ems_platform.core.settings import PlatformSettings
from tests.platform.payloads import encode, sample
from tests.support.ems_broker import EmsBrokerProcess
from tests.support.platform import run_platform

POLL_ATTEMPTS = 3000


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(POLL_ATTEMPTS):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_ingest_logs_in_with_the_service_token_and_stores_device_telemetry(
    database_url: str, ems_broker: EmsBrokerProcess
) -> None:
    settings = PlatformSettings(
        database_url=database_url,
        mqtt_host=ems_broker.host,
        mqtt_port=ems_broker.port,
        admin_token=generate_token(),
        service_token=generate_token(),
        ingest_flush_ms=20,
        reconnect_max_s=1.0,
    )
    async with (
        run_platform(settings) as platform,
        httpx.AsyncClient(base_url=platform.base_url, headers=platform.admin_headers) as http,
    ):

        async def connected() -> bool:
            return platform.ingest_connected

        await eventually(connected)
        created = await http.post("/api/v1/devices", json={"device_id": "meter-7"})
        token = created.json()["token"]
        async with aiomqtt.Client(
            ems_broker.host,
            ems_broker.port,
            identifier="meter-7",
            username="meter-7",
            password=token,
        ) as device:
            await device.publish("ems/meter-7/telemetry", encode(sample()), qos=1)

            async def stored() -> bool:
                body = (await http.get("/api/v1/devices/meter-7/latest")).json()
                return set(body["phases"]) == {"A", "B", "C"}

            await eventually(stored)
