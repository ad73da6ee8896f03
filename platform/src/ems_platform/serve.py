"""``ems platform``: the API and the ingest in one process, served by uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from ems_platform.api.app import create_app
from ems_platform.core.errors import PlatformError
from ems_platform.core.settings import PlatformSettings

log = logging.getLogger(__name__)


class StartupError(PlatformError):
    """The platform could not start; the message says why and what to do."""


class _Server(uvicorn.Server):
    """Stops gracefully on SIGINT/SIGTERM and then returns (exit status 0).

    uvicorn re-raises the captured signal after its shutdown, so the process would die by
    the signal; supervisors (``ems up``, systemd) read a clean stop better as status 0.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, self.handle_exit, sig, None)
            except (ValueError, RuntimeError, NotImplementedError):
                continue  # not the main thread: the embedding program handles signals
            installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)


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
    server = _Server(config)
    try:
        await server.serve()
    except SystemExit as exc:
        # uvicorn exits the process on a failed startup; turn that into an error that says why.
        error = app.state.startup_error
        if error is not None:
            raise StartupError(str(error)) from error
        raise StartupError(
            f"could not serve on {settings.api_host}:{settings.api_port} (see the log above)"
        ) from exc
