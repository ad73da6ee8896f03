"""A throwaway PostgreSQL+TimescaleDB for one benchmark run, and the tokens it needs.

Every session the benchmark opens is a real EMS principal: a registered device with its
own device token, so the brokers do exactly the authentication and ACL work they do for a
fleet.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from ems_access.store import create_token
from ems_timescale import LocalCluster, migrate

logger = logging.getLogger(__name__)

PUBLISHER_ID = "bench-pub"
SUBSCRIBER_NAME = "bench-sub"
# Concurrent create_token calls; each is its own short transaction.
_TOKEN_WORKERS = 8


@dataclass(frozen=True)
class Device:
    device_id: str
    token: str = field(repr=False)


@dataclass(frozen=True)
class Credentials:
    """Plaintext tokens live only in this process's memory and its children's environment."""

    publisher: Device
    subscriber_token: str = field(repr=False)
    warmup: tuple[Device, ...]
    devices: tuple[Device, ...]


@asynccontextmanager
async def throwaway_database(data_dir: Path, *, durable: bool = False) -> AsyncIterator[str]:
    """A migrated cluster in `data_dir`; yields its DSN, stops it afterwards.

    Non-durable by default (fsync off: fine for broker figures); a benchmark of commits
    needs ``durable=True``.
    """
    async with LocalCluster(data_dir, durable=durable) as cluster:
        await migrate(cluster.dsn())
        yield cluster.dsn()


@asynccontextmanager
async def scratch_database(prefix: str, *, durable: bool = False) -> AsyncIterator[str]:
    """``throwaway_database`` in a new temporary directory named ``prefix``..., which is
    removed afterwards; yields the DSN."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    workdir.chmod(0o755)  # the postgres OS user must reach the data directory
    try:
        async with throwaway_database(workdir / "pg", durable=durable) as dsn:
            yield dsn
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def device_ids(count: int, prefix: str) -> list[str]:
    return [f"{prefix}-{i:05d}" for i in range(count)]


async def _device_tokens(pool: asyncpg.Pool[Any], ids: list[str]) -> list[Device]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for device_id in ids:
        queue.put_nowait(device_id)
    made: dict[str, str] = {}

    async def worker() -> None:
        while not queue.empty():
            device_id = queue.get_nowait()
            _, token = await create_token(
                pool, role="device", label="benchmark device", device_id=device_id
            )
            made[device_id] = token

    async with asyncio.TaskGroup() as tasks:
        for n in range(_TOKEN_WORKERS):
            tasks.create_task(worker(), name=f"bench-token-worker-{n}")
    return [Device(device_id, made[device_id]) for device_id in ids]


async def create_credentials(dsn: str, *, devices: int, warmup: int) -> Credentials:
    """Register the publisher and `devices + warmup` idle devices; make their tokens."""
    ids = [PUBLISHER_ID, *device_ids(warmup, "bench-warm"), *device_ids(devices, "bench-dev")]
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=_TOKEN_WORKERS)
    try:
        await pool.executemany(
            "INSERT INTO devices (device_id, name) VALUES ($1, 'benchmark')",
            [(device_id,) for device_id in ids],
        )
        made = await _device_tokens(pool, ids)
        _, subscriber_token = await create_token(pool, role="service", label="benchmark sub")
    finally:
        await pool.close()
    return Credentials(
        publisher=made[0],
        subscriber_token=subscriber_token,
        warmup=tuple(made[1 : 1 + warmup]),
        devices=tuple(made[1 + warmup :]),
    )
