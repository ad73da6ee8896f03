"""The app factory; its lifespan owns the pool, the access cache and (optionally) the ingest."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from ems_access.cache import AccessCache
from ems_access.ratelimit import FailureLimiter
from ems_platform.admin.tokens import install_configured_tokens
from ems_platform.api.routes import devices, health, hooks, tokens
from ems_platform.api.runtime import Runtime
from ems_platform.core.db import open_pool
from ems_platform.core.gc_tuning import Collector
from ems_platform.core.settings import PlatformSettings
from ems_platform.ingest import pg_codecs
from ems_platform.ingest.metrics import IngestMetrics
from ems_platform.ingest.service import build_ingest

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


async def _start(stack: AsyncExitStack, settings: PlatformSettings, ingest: bool) -> Runtime:
    pool = await stack.enter_async_context(
        open_pool(
            settings.database_url.get_secret_value(),
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
        )
    )
    await install_configured_tokens(pool, settings)
    access = await stack.enter_async_context(AccessCache(pool, ttl=settings.access_cache_ttl_s))
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    running = None
    if ingest:
        # Its own small pool: one connection writes batches, and the fast timestamp codec
        # stays off the API's connections.
        ingest_pool = await stack.enter_async_context(
            open_pool(
                settings.database_url.get_secret_value(),
                min_size=1,
                max_size=settings.ingest_write_lanes + 1,
                init=pg_codecs.install,
            )
        )
        running = await stack.enter_async_context(build_ingest(ingest_pool, settings, metrics))
        # Collects on a schedule once the entry point turned automatic collection off
        # (``python -m ems_platform`` with the ingest on); otherwise it only waits.
        collector = Collector(
            interval=settings.ingest_gc_interval_s, young_limit=settings.ingest_gc_young_limit
        )
        metrics.track_gc(collector)
        stack.push_async_callback(_stop_task, asyncio.create_task(collector.run(), name="ems-gc"))
    limiter = FailureLimiter(settings.auth_fail_limit, settings.auth_fail_window)
    return Runtime(settings, pool, access, registry, running, limiter)


async def _stop_task(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable during %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse(
        {"detail": "database unavailable; try again shortly"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
    )


def create_app(settings: PlatformSettings, *, ingest: bool | None = None) -> FastAPI:
    """The platform's ASGI app; ``ingest`` overrides ``settings.ingest_enabled``."""
    run_ingest = settings.ingest_enabled if ingest is None else ingest

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            try:
                app.state.runtime = await _start(stack, settings, run_ingest)
            except Exception as exc:
                # uvicorn only logs a failed startup; ``serve`` re-raises this one.
                app.state.startup_error = exc
                raise
            yield

    app = FastAPI(
        title="EMS platform",
        version="1",
        summary="Energy monitoring: devices, readings, commands",
        lifespan=lifespan,
    )
    app.state.startup_error = None
    app.include_router(health.router)
    app.include_router(devices.router, prefix=API_PREFIX)
    app.include_router(tokens.router, prefix=API_PREFIX)
    if settings.hooks_enabled:
        app.include_router(hooks.router)
    for error in (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
        app.add_exception_handler(error, _database_unavailable)
    return app
