"""The FastAPI application: routes, static page, and the lifespan that owns all state."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from ems_access.ratelimit import FailureLimiter
from ems_dashboard_ws.access_adapter import open_authenticator
from ems_dashboard_ws.headers import SecurityHeaders
from ems_dashboard_ws.hub import Hub
from ems_dashboard_ws.mqtt_link import MqttLink
from ems_dashboard_ws.policy import Authenticator
from ems_dashboard_ws.refresh import SessionRefresher
from ems_dashboard_ws.routes import pages, ws
from ems_dashboard_ws.settings import DashboardSettings
from ems_dashboard_ws.state import STATE_KEY, DashboardState


@asynccontextmanager
async def running(
    settings: DashboardSettings, authenticator: Authenticator | None = None
) -> AsyncIterator[DashboardState]:
    """The adapter's long-lived parts: token store, hub, broker link, session re-checks."""
    async with AsyncExitStack() as stack:
        hub = Hub(max_filters=settings.ws_max_filters, retained_limit=settings.retained_limit)
        if authenticator is None:
            real = await stack.enter_async_context(open_authenticator(settings))
            refresher = SessionRefresher(hub, real, settings.auth_refresh_interval)
            stack.callback(real.on_change(refresher.wake))
            authenticator = real
        else:
            refresher = SessionRefresher(hub, authenticator, settings.auth_refresh_interval)
        link = MqttLink(settings, hub.on_mqtt_message, on_connect=hub.forget_retained)
        async with asyncio.TaskGroup() as tasks:
            background = [
                tasks.create_task(link.run(), name="mqtt-link"),
                tasks.create_task(refresher.run(), name="session-refresh"),
            ]
            try:
                limiter = FailureLimiter(settings.auth_fail_limit, settings.auth_fail_window)
                yield DashboardState(settings, hub, authenticator, link, limiter)
            finally:
                for task in background:
                    task.cancel()


def create_app(
    settings: DashboardSettings, *, authenticator: Authenticator | None = None
) -> FastAPI:
    """Build the app; ``authenticator`` replaces the database-backed one (tests)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with running(settings, authenticator) as state:
            yield {STATE_KEY: state}

    app = FastAPI(
        title="EMS dashboard WebSocket adapter",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.include_router(pages.router)
    app.include_router(ws.router)
    app.mount("/static", StaticFiles(packages=[pages.STATIC_PACKAGE]), name="static")
    app.add_middleware(SecurityHeaders)
    return app
