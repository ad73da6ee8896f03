"""An embedded, private PostgreSQL + TimescaleDB cluster living in one data directory.

`ems up` runs its default database this way, and the test fixtures run throwaway ones.
The server listens on 127.0.0.1 only and trusts every connection that reaches it (see
the README for why that is acceptable, and when to use an external database instead).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import asyncpg

from ems_timescale import clusterconf
from ems_timescale.errors import ClusterError, DataDirAccessError
from ems_timescale.osuser import check_traversable, server_user
from ems_timescale.pgbin import find_pg_install
from ems_timescale.process import ProcessRunner, is_postgres, wait_gone

logger = logging.getLogger(__name__)

SUPERUSER = "postgres"
DEFAULT_DATABASE = "ems"


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (the kernel's pick for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def quote_ident(name: str) -> str:
    if not name or "\x00" in name:
        raise ValueError(f"not a usable identifier: {name!r}")
    return '"' + name.replace('"', '""') + '"'


class LocalCluster:
    """A PostgreSQL cluster in `data_dir`, created on first start, served on 127.0.0.1:`port`.

    Use as `async with LocalCluster(path) as cluster:` or call start()/stop(); stop() then
    start() again on the same object simulates a database outage (same directory and port).
    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        *,
        durable: bool = True,
        pg_bin: Path | None = None,
        settings: Mapping[str, str] | None = None,
        default_database: str | None = DEFAULT_DATABASE,
        start_timeout: float = 120.0,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = free_port() if port is None else port
        self.durable = durable
        self._install = find_pg_install(pg_bin)
        self._extra_settings = dict(settings or {})
        self._default_database = default_database
        self._start_timeout = start_timeout
        self._user = server_user()
        self._runner = ProcessRunner(self._user, self.data_dir)

    def dsn(self, dbname: str = DEFAULT_DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / clusterconf.LOG_DIR

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Initialise the directory if it is empty, write the settings, start and wait."""
        self._prepare_directory()
        if not (self.data_dir / "PG_VERSION").exists():
            await self._initdb()
        running = self.postmaster_pid()
        if running is not None:
            self._adopt(running)
        else:
            self._write_config()
            logger.info("starting PostgreSQL in %s on 127.0.0.1:%d", self.data_dir, self.port)
            result = await self._runner.run(
                self._install.tool("pg_ctl"),
                "start",
                "--wait",
                f"--timeout={int(self._start_timeout)}",
                f"--pgdata={self.data_dir}",
                f"--log={self.log_dir / 'startup.log'}",
                "--silent",
            )
            if result.returncode != 0:
                # A server still starting after the timeout must not outlive the failure.
                await self.stop()
                raise ClusterError(
                    f"PostgreSQL in {self.data_dir} did not start:\n{result.output}"
                    f"{self._log_tail()}"
                )
        if self._default_database is not None:
            await self.ensure_database(self._default_database)

    async def stop(self) -> None:
        """Fast shutdown; returns once no server process of this cluster is left."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        logger.info("stopping PostgreSQL in %s", self.data_dir)
        for mode in ("fast", "immediate"):
            result = await self._runner.run(
                self._install.tool("pg_ctl"),
                "stop",
                f"--pgdata={self.data_dir}",
                f"--mode={mode}",
                "--wait",
                "--timeout=60",
                "--silent",
            )
            if result.returncode == 0 or self.postmaster_pid() is None:
                break
            logger.warning("pg_ctl stop -m %s failed: %s", mode, result.output.strip())
        # pg_ctl returns when postmaster.pid is gone; the postmaster (not our child) may
        # still be exiting, and we promise no process is left behind.
        if not await wait_gone(pid, within=30.0):
            raise ClusterError(f"PostgreSQL (pid {pid}) in {self.data_dir} did not stop")

    def postmaster_pid(self) -> int | None:
        """The pid of this cluster's live postmaster, or None."""
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
            pid = int(first)
        except (FileNotFoundError, IndexError, ValueError):
            return None
        return pid if is_postgres(pid) else None

    async def ensure_database(self, name: str, *, template: str | None = None) -> bool:
        """Create database `name` (from `template` if given) unless it exists; True if made."""
        conn = await asyncpg.connect(self.dsn("postgres"))
        try:
            if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
                return False
            sql = f"CREATE DATABASE {quote_ident(name)}"
            if template is not None:
                sql += f" TEMPLATE {quote_ident(template)}"
            try:
                await conn.execute(sql)
            except asyncpg.DuplicateDatabaseError:
                return False
            logger.info("created database %s", name)
            return True
        finally:
            await conn.close()

    async def drop_database(self, name: str) -> None:
        """Drop `name` if it exists, ending any sessions still connected to it."""
        conn = await asyncpg.connect(self.dsn("postgres"))
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        finally:
            await conn.close()

    def _prepare_directory(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        initialised = (self.data_dir / "PG_VERSION").exists()
        if not initialised and any(self.data_dir.iterdir()):
            raise ClusterError(f"{self.data_dir} is neither empty nor a PostgreSQL data directory")
        owner = self._user.uid if self._user else os.geteuid()
        if self._user is not None:
            check_traversable(self._user, self.data_dir)
            if not initialised:
                os.chown(self.data_dir, self._user.uid, self._user.gid)
        if self.data_dir.stat().st_uid != owner:
            raise DataDirAccessError(
                f"{self.data_dir} belongs to uid {self.data_dir.stat().st_uid}, "
                f"but PostgreSQL would run as uid {owner}"
            )
        # PostgreSQL refuses a data directory that others may read.
        self.data_dir.chmod(0o700)

    async def _initdb(self) -> None:
        logger.info("initialising a PostgreSQL cluster in %s", self.data_dir)
        args = [
            f"--pgdata={self.data_dir}",
            f"--username={SUPERUSER}",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-instructions",
        ]
        if not self.durable:
            args.append("--no-sync")
        result = await self._runner.run(self._install.tool("initdb"), *args)
        if result.returncode != 0:
            raise ClusterError(f"initdb in {self.data_dir} failed:\n{result.output}")
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"\n{clusterconf.INCLUDE_LINE}\n")

    def _write_config(self) -> None:
        socket_dir = clusterconf.socket_dir_for(self.data_dir, self.port)
        if not socket_dir:
            logger.warning(
                "%s is too long a path for a unix socket; serving TCP only", self.data_dir
            )
        settings = clusterconf.settings_for(
            port=self.port, socket_dir=socket_dir, durable=self.durable, extra=self._extra_settings
        )
        self._write_owned(self.data_dir / clusterconf.CONF_NAME, clusterconf.render(settings))
        self._write_owned(self.data_dir / "pg_hba.conf", clusterconf.PG_HBA)
        self.log_dir.mkdir(mode=0o700, exist_ok=True)
        self._chown(self.log_dir)

    def _adopt(self, pid: int) -> None:
        """Accept a server left running by an earlier process if it serves our port."""
        lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        port = int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None
        if port != self.port:
            raise ClusterError(
                f"PostgreSQL (pid {pid}) already runs in {self.data_dir} on port {port}, "
                f"not {self.port}; stop it first"
            )
        logger.info("PostgreSQL (pid %d) already running in %s; using it", pid, self.data_dir)

    def _write_owned(self, path: Path, text: str) -> None:
        path.write_text(text)
        self._chown(path)

    def _chown(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.uid, self._user.gid)

    def _log_tail(self, lines: int = 30) -> str:
        logs = sorted(self.log_dir.glob("*.log"), key=lambda p: p.stat().st_mtime)
        parts = []
        for path in logs[-2:]:
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"\n--- {path} ---\n" + "\n".join(tail))
        return "".join(parts)
