"""pytest plugin: real PostgreSQL + TimescaleDB for tests.

- `pg_cluster` (session): one throwaway cluster on a free port, stopped at session end.
- `pg_template` (session): name of a database migrated once, cloned for every test.
- `database_url` (function): a fresh migrated database of its own, dropped afterwards.
- `db_pool` (function): an asyncpg pool on `database_url`, closed afterwards.
- `private_pg_cluster` (function): a cluster of the test's own with a migrated `ems`
  database at `private_pg_cluster.dsn()`; the test may stop() and start() it.

The sync fixtures run their coroutines on a private event loop in a worker thread, so they
serve sync tests and async tests of any loop scope alike.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest

from ems_timescale import LocalCluster, migrate

T = TypeVar("T")

TEMPLATE_DATABASE = "ems_template"
# Bounds for cleanup only; no test outcome depends on them.
POOL_CLOSE_SECONDS = 30.0
SETTLE_POLLS = 100
CLONE_ATTEMPTS = 3


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion on a fresh loop, even if this thread is inside one."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-fixture") as pool:
        return pool.submit(asyncio.run, coro).result()


def _new_data_dir() -> Path:
    # Directly under /tmp (not pytest's 0700 tmp_path) so the postgres OS user can reach it
    # when the tests run as root.
    return Path(tempfile.mkdtemp(prefix="ems-pg-", dir="/tmp"))


async def _start_migrated(data_dir: Path) -> LocalCluster:
    cluster = LocalCluster(data_dir, durable=False)
    await cluster.start()
    try:
        await migrate(cluster.dsn())
    except BaseException:
        await cluster.stop()
        raise
    return cluster


async def _make_template(cluster: LocalCluster) -> None:
    await cluster.ensure_database(TEMPLATE_DATABASE)
    await migrate(cluster.dsn(TEMPLATE_DATABASE))
    conn = await asyncpg.connect(cluster.dsn("postgres"))
    try:
        # CREATE DATABASE ... TEMPLATE fails ("being accessed by other users") while any
        # session is in the template, and TimescaleDB keeps starting a scheduler there after
        # each clone. Refusing connections keeps the template free for cloning.
        await conn.execute(
            f"ALTER DATABASE {TEMPLATE_DATABASE} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"
        )
        for _ in range(SETTLE_POLLS):
            sessions = await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                TEMPLATE_DATABASE,
            )
            if sessions == 0:
                break
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def _clone(cluster: LocalCluster, name: str) -> None:
    for attempt in range(CLONE_ATTEMPTS):
        try:
            await cluster.ensure_database(name, template=TEMPLATE_DATABASE)
            return
        except asyncpg.ObjectInUseError:
            # A session that was ending as we cloned; PostgreSQL already waited 5 s for it.
            if attempt == CLONE_ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.1)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalCluster]:
    data_dir = _new_data_dir()
    cluster = LocalCluster(data_dir, durable=False, default_database=None)
    try:
        run_sync(cluster.start())
        yield cluster
    finally:
        run_sync(cluster.stop())
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template(pg_cluster: LocalCluster) -> str:
    run_sync(_make_template(pg_cluster))
    return TEMPLATE_DATABASE


@pytest.fixture
def database_url(pg_cluster: LocalCluster, pg_template: str) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex[:16]}"
    run_sync(_clone(pg_cluster, name))
    try:
        yield pg_cluster.dsn(name)
    finally:
        run_sync(pg_cluster.drop_database(name))


@pytest.fixture
async def db_pool(database_url: str) -> AsyncIterator[asyncpg.Pool[asyncpg.Record]]:
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=5)
    try:
        yield pool
    finally:
        try:
            await asyncio.wait_for(pool.close(), POOL_CLOSE_SECONDS)
        except TimeoutError:
            pool.terminate()


@pytest.fixture
def private_pg_cluster() -> Iterator[LocalCluster]:
    data_dir = _new_data_dir()
    try:
        cluster = run_sync(_start_migrated(data_dir))
        try:
            yield cluster
        finally:
            run_sync(cluster.stop())
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
