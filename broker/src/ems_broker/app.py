"""Running the broker: database pool, access cache, amqtt broker and session guard."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg

from ems_access import AccessCache
from ems_access.ratelimit import FailureLimiter
from ems_broker.guard import SessionGuard
from ems_broker.server import EmsBroker
from ems_broker.settings import BrokerSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunningBroker:
    host: str
    port: int
    broker: EmsBroker
    access: AccessCache


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def broker_config(settings: BrokerSettings, cache: AccessCache) -> dict[str, Any]:
    """amqtt's config: one TCP listener and our two plugins, nothing else."""
    return {
        "listeners": {
            "default": {"type": "tcp", "bind": _bind(settings.mqtt_host, settings.mqtt_port)}
        },
        # Naming the plugins explicitly also keeps amqtt's defaults (anonymous access,
        # $SYS publisher) out.
        "plugins": {
            "ems_broker.plugins.TokenAuthPlugin": {"access": cache},
            "ems_broker.plugins.AclTopicPlugin": {},
        },
        "session_expiry_interval": settings.mqtt_session_expiry,
        "timeout_disconnect_delay": 0,
    }


@asynccontextmanager
async def running_broker(settings: BrokerSettings) -> AsyncIterator[RunningBroker]:
    """Serve MQTT until the block exits. The listener opens only once the database is up."""
    pool = await asyncpg.create_pool(
        settings.database_url.get_secret_value(), min_size=1, max_size=settings.db_pool_size
    )
    try:
        async with AccessCache(pool, ttl=settings.access_cache_ttl) as cache:
            broker = EmsBroker(
                broker_config(settings, cache),
                max_packet=settings.mqtt_max_packet,
                connect_timeout=settings.mqtt_connect_timeout,
                max_queued=settings.mqtt_max_queued,
                limiter=FailureLimiter(settings.auth_fail_limit, settings.auth_fail_window),
            )
            await broker.start()
            try:
                running = RunningBroker(settings.mqtt_host, broker.bound_port(), broker, cache)
                logger.info("MQTT broker listening on %s", _bind(running.host, running.port))
                async with asyncio.TaskGroup() as tasks:
                    guard = tasks.create_task(
                        SessionGuard(broker, cache).run(), name="ems-broker-session-guard"
                    )
                    try:
                        yield running
                    finally:
                        guard.cancel()
            finally:
                await broker.shutdown()
    finally:
        await pool.close()


async def serve(settings: BrokerSettings) -> None:
    """Run the broker until cancelled."""
    async with running_broker(settings):
        await asyncio.Event().wait()
