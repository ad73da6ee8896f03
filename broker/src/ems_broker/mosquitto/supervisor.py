"""``ems broker --mosquitto``: Mosquitto with the EMS auth plugin, kept in sync with the DB.

Start order: compile the plugin (cached), export the access snapshot, write the config,
start ``mosquitto`` as a child, wait until it accepts TCP. The child is stopped (SIGTERM,
then SIGKILL) when the block exits; if it dies on its own, the block fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from ems_broker.mosquitto.config import MosquittoPaths, render_config
from ems_broker.mosquitto.plugin_build import build_plugin
from ems_broker.mosquitto.settings import MosquittoSettings
from ems_broker.mosquitto.sync import SnapshotExportError, SnapshotSync
from ems_contract.backoff import Backoff

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
#: How long a stop waits for the access-sync pool's connections to be handed back before it
#: closes them regardless (a stop must end: whatever runs the supervisor waits for it).
POOL_CLOSE_TIMEOUT_S = 5.0


class MosquittoError(RuntimeError):
    """Mosquitto did not start, or stopped on its own."""


@dataclass(frozen=True)
class RunningMosquitto:
    host: str
    port: int
    paths: MosquittoPaths
    process: asyncio.subprocess.Process
    sync: SnapshotSync


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def _accepts(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


async def _first_snapshot(sync: SnapshotSync, path: Path) -> None:
    """Export before Mosquitto starts; an old snapshot will do while the DB is down."""
    backoff = Backoff(base=0.2, cap=5.0)
    while True:
        try:
            await sync.export()
            return
        except SnapshotExportError as exc:
            if await asyncio.to_thread(path.exists):
                logger.warning("%s; starting with the previous snapshot", exc)
                return
            logger.warning("%s; retrying (no previous snapshot to start with)", exc)
        await backoff.sleep()


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        logger.error("mosquitto ignored SIGTERM for %.0f s; killing it", STOP_TIMEOUT_S)
        process.kill()
        await process.wait()


async def _wait_ready(process: asyncio.subprocess.Process, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    while loop.time() < deadline:
        if process.returncode is not None:
            raise MosquittoError(f"mosquitto exited with code {process.returncode} at start")
        if await _accepts(host, port):
            return
        await asyncio.sleep(0.05)
    raise MosquittoError(f"mosquitto did not listen on {host}:{port} in {READY_TIMEOUT_S} s")


async def _watch(process: asyncio.subprocess.Process) -> None:
    code = await process.wait()
    raise MosquittoError(f"mosquitto exited unexpectedly with code {code}")


async def _create_pool(dsn: str) -> asyncpg.Pool[Any]:
    # min_size=0: the pool opens even while the database is down, so an old snapshot can
    # carry the broker until it is back.
    return await asyncpg.create_pool(dsn, min_size=0, max_size=2)


@asynccontextmanager
async def running_mosquitto(settings: MosquittoSettings) -> AsyncIterator[RunningMosquitto]:
    plugin = await asyncio.to_thread(build_plugin, settings.mosquitto_plugin_cache)
    state_dir = settings.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(0o700)
    paths = MosquittoPaths(state_dir=state_dir, plugin=plugin)
    port = settings.mqtt_port or _free_port(settings.mqtt_host)
    pool = await _create_pool(settings.database_url.get_secret_value())
    try:
        sync = SnapshotSync(pool, paths.snapshot, refresh=settings.access_refresh)
        await _first_snapshot(sync, paths.snapshot)
        paths.config.write_text(render_config(settings, paths, port))
        process = await asyncio.create_subprocess_exec(
            str(settings.mosquitto_bin), "-c", str(paths.config), cwd=state_dir
        )
        try:
            await _wait_ready(process, settings.mqtt_host, port)
            logger.info("Mosquitto listening on %s:%d (EMS auth plugin)", settings.mqtt_host, port)
            running = RunningMosquitto(settings.mqtt_host, port, paths, process, sync)
            async with asyncio.TaskGroup() as tasks:
                syncing = tasks.create_task(sync.run(), name="ems-mosquitto-sync")
                watching = tasks.create_task(_watch(process), name="ems-mosquitto-watch")
                try:
                    yield running
                finally:
                    syncing.cancel()
                    watching.cancel()
        finally:
            await _stop(process)
    finally:
        await close_pool(pool)


async def close_pool(pool: asyncpg.Pool[Any], grace: float = POOL_CLOSE_TIMEOUT_S) -> None:
    """Close gracefully if the pool's connections come back within ``grace`` seconds, else
    close them at once (``Pool.close`` alone waits for every acquired connection)."""
    try:
        await asyncio.wait_for(pool.close(), grace)
    except TimeoutError:
        logger.warning(
            "database connections of the access sync still busy after %.0f s; closing them",
            grace,
        )
        pool.terminate()


async def serve(settings: MosquittoSettings) -> None:
    """Run Mosquitto until cancelled."""
    async with running_mosquitto(settings):
        await asyncio.Event().wait()
