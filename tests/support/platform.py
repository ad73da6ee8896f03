"""pytest plugin: the EMS platform (REST API + MQTT ingest) served by a real uvicorn.

- ``run_platform(settings)``: async context manager serving ``create_app(settings)`` on a
  free port of 127.0.0.1 in the current event loop; yields a ``RunningPlatform``.
- ``platform_server`` (function, async): the platform against ``database_url`` and the
  anonymous ``mosquitto_broker``, with freshly generated admin and service tokens.

Compose ``run_platform`` with other brokers (e.g. the amqtt-based ``ems broker``) by passing
settings whose ``mqtt_host``/``mqtt_port``/``service_token`` point at them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from fastapi import FastAPI

from ems_access.tokens import generate_token
from ems_platform.api.app import create_app
from ems_platform.core.settings import PlatformSettings
from tests.support.mosquitto import MosquittoBroker

STARTUP_POLLS = 3000  # x 10 ms; a bound for a hung startup only
SHUTDOWN_SECONDS = 60.0


class _TestServer(uvicorn.Server):
    """Leaves SIGINT/SIGTERM to pytest."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class RunningPlatform:
    base_url: str  # e.g. http://127.0.0.1:41234 (the API is under /api/v1)
    settings: PlatformSettings
    app: FastAPI

    @property
    def admin_token(self) -> str:
        assert self.settings.admin_token is not None
        return self.settings.admin_token.get_secret_value()

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    @property
    def ingest_connected(self) -> bool:
        ingest = self.app.state.runtime.ingest
        return ingest is not None and bool(ingest.connected)


@contextlib.asynccontextmanager
async def run_platform(settings: PlatformSettings) -> AsyncIterator[RunningPlatform]:
    app = create_app(settings)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="on", log_config=None, access_log=False
    )
    server = _TestServer(config)

    async def serve() -> None:
        # uvicorn sys.exit()s on a failed startup; a SystemExit escaping a task would stop
        # the test's event loop, and the reason is in app.state.startup_error anyway.
        with contextlib.suppress(SystemExit):
            await server.serve()

    task = asyncio.create_task(serve(), name="platform-uvicorn")
    try:
        for _ in range(STARTUP_POLLS):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            error = app.state.startup_error
            raise RuntimeError(f"platform did not start: {error!r}") from error
        port = server.servers[0].sockets[0].getsockname()[1]
        yield RunningPlatform(f"http://127.0.0.1:{port}", settings, app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, SHUTDOWN_SECONDS)


@pytest.fixture
async def platform_server(
    database_url: str, mosquitto_broker: MosquittoBroker
) -> AsyncIterator[RunningPlatform]:
    settings = PlatformSettings(
        database_url=database_url,
        mqtt_host=mosquitto_broker.host,
        mqtt_port=mosquitto_broker.port,
        admin_token=generate_token(),
        service_token=generate_token(),
        ingest_flush_ms=20,
        reconnect_max_s=1.0,
    )
    async with run_platform(settings) as running:
        yield running
