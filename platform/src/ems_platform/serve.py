"""``ems platform``: the API and the ingest in one process, served by uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from ems_platform.api.app import create_app
from ems_platform.core.errors import PlatformError
from ems_platform.core.settings import PlatformSettings

log = logging.getLogger(__name__)


class StartupError(PlatformError):
    """The platform could not start; the message says why and what to do."""


async def serve(settings: PlatformSettings) -> None:
    """Run until SIGINT/SIGTERM; raise StartupError if the lifespan could not start."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        lifespan="on",
        log_config=None,  # logging is configured by the entry point
        access_log=False,
        proxy_headers=False,
    )
    server = uvicorn.Server(config)
    await server.serve()
    error = app.state.startup_error
    if error is not None:
        raise StartupError(str(error)) from error
    if not server.started:
        raise StartupError(
            f"could not serve on {settings.api_host}:{settings.api_port} (see the log above)"
        )
