"""Running the app under uvicorn: ``serve`` for processes, ``serving`` for tests and tools."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from ems_dashboard_ws import redact
from ems_dashboard_ws.app import create_app
from ems_dashboard_ws.policy import Authenticator
from ems_dashboard_ws.settings import DashboardSettings

logger = logging.getLogger(__name__)


class StartupFailed(RuntimeError):
    """uvicorn stopped before it started serving (bad settings, port in use, lifespan error)."""


def uvicorn_config(app: FastAPI, settings: DashboardSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.ws_host,
        port=settings.ws_port,
        ws="websockets-sansio",
        # uvicorn pings every interval and waits this long for the pong: missing
        # ``ws_ping_misses`` intervals in a row drops the client.
        ws_ping_interval=settings.ws_ping_interval,
        ws_ping_timeout=settings.ws_ping_interval * settings.ws_ping_misses,
        ws_max_size=settings.ws_max_message_bytes,
        lifespan="on",
        log_config=None,
        proxy_headers=False,
        server_header=False,
    )


async def serve(settings: DashboardSettings) -> None:
    """Serve on ``EMS_WS_HOST:EMS_WS_PORT`` until cancelled or signalled."""
    redact.install()
    server = uvicorn.Server(uvicorn_config(create_app(settings), settings))
    await server.serve()
    if not server.started:
        raise StartupFailed(f"could not serve on {settings.ws_host}:{settings.ws_port}")


@dataclass(frozen=True, slots=True)
class RunningServer:
    host: str
    port: int
    app: FastAPI

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"


@asynccontextmanager
async def serving(
    settings: DashboardSettings, *, authenticator: Authenticator | None = None
) -> AsyncIterator[RunningServer]:
    """Serve in a background task; ``EMS_WS_PORT=0`` picks a free port, reported back."""
    redact.install()
    app = create_app(settings, authenticator=authenticator)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.ws_host, settings.ws_port))
    host, port = sock.getsockname()[:2]
    server = uvicorn.Server(uvicorn_config(app, settings))
    task = asyncio.create_task(server.serve(sockets=[sock]), name="uvicorn")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise StartupFailed(f"uvicorn exited before serving on {host}:{port}")
            await asyncio.sleep(0.02)
        logger.info("dashboard adapter serving on http://%s:%d", host, port)
        yield RunningServer(host, port, app)
    finally:
        server.should_exit = True
        try:
            await task
        finally:
            sock.close()
