"""The platform as deployed: uvicorn + ingest in one process, and its entry point."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiomqtt
import httpx
import pytest

from ems_access.tokens import generate_token
from ems_platform.core.settings import PlatformSettings
from ems_platform.serve import StartupError, serve
from ems_timescale import LocalCluster
from tests.platform.payloads import encode, sample
from tests.support.platform import RunningPlatform
from tests.support.ports import free_port

POLL_ATTEMPTS = 3000


async def eventually(check: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(POLL_ATTEMPTS):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


@pytest.fixture
async def empty_database(pg_cluster: LocalCluster) -> AsyncIterator[str]:
    """A database that exists but was never migrated."""
    name = f"empty_{uuid.uuid4().hex[:12]}"
    await pg_cluster.ensure_database(name)
    try:
        yield pg_cluster.dsn(name)
    finally:
        await pg_cluster.drop_database(name)


async def test_device_telemetry_reaches_latest_through_broker_and_api(
    platform_server: RunningPlatform,
) -> None:
    broker_host = platform_server.settings.mqtt_host
    broker_port = platform_server.settings.mqtt_port
    async with httpx.AsyncClient(
        base_url=platform_server.base_url, headers=platform_server.admin_headers
    ) as http:
        created = await http.post("/api/v1/devices", json={"device_id": "house-1"})
        assert created.status_code == 201
        token = created.json()["token"]

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await eventually(ready)
        assert (await http.get("/readyz")).json()["checks"]["mqtt"] is True
        async with aiomqtt.Client(
            broker_host, broker_port, identifier="house-1", username="house-1", password=token
        ) as device:
            status = {"v": 1, "state": "online", "ts": "2026-11-22T08:00:00Z", "boot": "b"}
            await device.publish("ems/house-1/status", encode(status), qos=1, retain=True)
            await device.publish("ems/house-1/telemetry", encode(sample()), qos=1)

        async def has_latest() -> bool:
            body = (await http.get("/api/v1/devices/house-1/latest")).json()
            return set(body["phases"]) == {"A", "B", "C"} and body["online"] is True

        await eventually(has_latest)
        latest = (await http.get("/api/v1/devices/house-1/latest")).json()
        assert latest["ts"] == "2026-11-22T08:15:03Z"
        assert latest["status"]["state"] == "online"
        assert latest["last_seen"] is not None
        metrics = (await http.get("/metrics")).text
        assert "ems_ingest_samples_stored_total 3.0" in metrics
        assert 'ems_ingest_messages_total{kind="telemetry"} 1.0' in metrics


async def test_serve_fails_fast_on_an_unmigrated_database(empty_database: str) -> None:
    settings = PlatformSettings(
        database_url=empty_database, api_port=free_port(), ingest_enabled=False
    )
    with pytest.raises(StartupError, match="ems migrate"):
        await serve(settings)


def _env(database_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMS_")}
    env.update(
        EMS_DATABASE_URL=database_url,
        EMS_API_PORT=str(port),
        EMS_INGEST_ENABLED="false",
        EMS_ADMIN_TOKEN=generate_token(),
    )
    return env


async def test_module_entry_point_serves_and_stops_on_sigterm(database_url: str) -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ems_platform"],
        env=_env(database_url, port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def healthy() -> bool:
                if process.poll() is not None:
                    raise AssertionError(process.stdout.read().decode() if process.stdout else "")
                try:
                    return (await http.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(healthy)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout:
            process.stdout.close()


async def test_module_entry_point_explains_a_missing_migration(empty_database: str) -> None:
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ems_platform"],
        env=_env(empty_database, free_port()),
        capture_output=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert b"ems migrate" in result.stderr


def test_help_lists_the_environment() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ems_platform", "--help"], capture_output=True, timeout=60
    )
    assert result.returncode == 0
    assert b"EMS_DATABASE_URL" in result.stdout and b"EMS_SERVICE_TOKEN" in result.stdout
