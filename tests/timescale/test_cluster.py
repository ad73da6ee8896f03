"""LocalCluster with real PostgreSQL processes: settings, outages, clean stops, clear errors."""

from __future__ import annotations

import os
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from ems_timescale import (
    ClusterError,
    DataDirAccessError,
    LocalCluster,
    PostgresNotFoundError,
    TimescaleNotInstalledError,
)
from ems_timescale.process import is_postgres
from tests.support.pg import _new_data_dir


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = _new_data_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


async def test_stop_and_start_keep_data(private_pg_cluster: LocalCluster) -> None:
    dsn = private_pg_cluster.dsn()
    conn = await asyncpg.connect(dsn)
    await conn.execute("INSERT INTO devices (device_id, name) VALUES ('dev1', 'kept')")
    await conn.close()

    await private_pg_cluster.stop()
    assert private_pg_cluster.postmaster_pid() is None
    with pytest.raises(OSError):
        await asyncpg.connect(dsn)

    await private_pg_cluster.start()
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT name FROM devices WHERE device_id = 'dev1'") == "kept"
    finally:
        await conn.close()


async def test_stop_leaves_no_server_process(data_dir: Path) -> None:
    cluster = LocalCluster(data_dir, durable=False)
    await cluster.start()
    pid = cluster.postmaster_pid()
    assert pid is not None
    children = _children(pid)
    assert children, "a running postmaster has background processes"
    await cluster.stop()
    assert not any(is_postgres(p) for p in [pid, *children])
    await cluster.stop()  # stopping a stopped cluster is a no-op


async def test_context_manager_serves_loopback_with_settings(data_dir: Path) -> None:
    async with LocalCluster(data_dir, durable=False) as cluster:
        conn = await asyncpg.connect(cluster.dsn())
        try:
            show = {
                name: await conn.fetchval(f"SHOW {name}")
                for name in (
                    "listen_addresses",
                    "port",
                    "unix_socket_directories",
                    "shared_preload_libraries",
                    "timescaledb.telemetry_level",
                    "fsync",
                    "synchronous_commit",
                    "full_page_writes",
                )
            }
        finally:
            await conn.close()
        pid = cluster.postmaster_pid()
    assert show == {
        "listen_addresses": "127.0.0.1",
        "port": str(cluster.port),
        "unix_socket_directories": str(data_dir),
        "shared_preload_libraries": "timescaledb",
        "timescaledb.telemetry_level": "off",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    assert pid is not None and not is_postgres(pid)
    assert list((data_dir / "log").glob("postgresql-*.log")), "the server logs into the data dir"


async def test_durable_cluster_keeps_fsync_on(data_dir: Path) -> None:
    # Durable settings reserve 2 GB of shared buffers; override that for a test box.
    async with LocalCluster(data_dir, settings={"shared_buffers": "128MB"}) as cluster:
        conn = await asyncpg.connect(cluster.dsn())
        try:
            assert await conn.fetchval("SHOW fsync") == "on"
            assert await conn.fetchval("SHOW shared_buffers") == "128MB"
        finally:
            await conn.close()


async def test_ensure_and_drop_database(pg_cluster: LocalCluster) -> None:
    assert await pg_cluster.ensure_database('odd "name"') is True
    assert await pg_cluster.ensure_database('odd "name"') is False
    conn = await asyncpg.connect(pg_cluster.dsn('odd "name"'))
    await pg_cluster.drop_database('odd "name"')  # ends the session still connected
    assert conn.is_closed() or not await _usable(conn)
    assert await pg_cluster.ensure_database('odd "name"') is True
    await pg_cluster.drop_database('odd "name"')


async def _usable(conn: asyncpg.Connection[asyncpg.Record]) -> bool:
    try:
        await conn.fetchval("SELECT 1")
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return False
    finally:
        await conn.close()
    return True


async def test_non_empty_foreign_directory_is_refused(data_dir: Path) -> None:
    (data_dir / "something.txt").write_text("not a database")
    with pytest.raises(ClusterError, match="neither empty nor a PostgreSQL data directory"):
        await LocalCluster(data_dir, durable=False).start()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root switches to the postgres user")
async def test_unreachable_directory_is_named(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    locked.chmod(0o700)
    target = locked / "pg"
    with pytest.raises(DataDirAccessError, match=str(locked)):
        await LocalCluster(target, durable=False).start()


def test_missing_binaries_are_reported(tmp_path: Path) -> None:
    with pytest.raises(PostgresNotFoundError, match="EMS_PG_BIN"):
        LocalCluster(tmp_path / "data", pg_bin=tmp_path)


def test_missing_timescaledb_is_reported(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("initdb", "pg_ctl", "postgres"):
        (bindir / tool).write_text("#!/bin/sh\nexit 1\n")
    pg_config = bindir / "pg_config"
    pg_config.write_text(f"#!/bin/sh\necho {tmp_path / 'share'}\n")
    pg_config.chmod(pg_config.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(TimescaleNotInstalledError, match=r"run scripts/setup-system\.sh"):
        LocalCluster(tmp_path / "data", pg_bin=bindir)


def test_pg_bin_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMS_PG_BIN", str(tmp_path / "nowhere"))
    with pytest.raises(PostgresNotFoundError, match="nowhere"):
        LocalCluster(tmp_path / "data")


async def test_port_in_use_is_reported_and_nothing_left(data_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cluster = LocalCluster(data_dir, taken.getsockname()[1], durable=False)
        with pytest.raises(ClusterError, match="already in use"):
            await cluster.start()
    assert cluster.postmaster_pid() is None
