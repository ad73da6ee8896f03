"""pytest plugin: ``ems broker --mosquitto`` (Mosquitto + the EMS auth plugin) for real.

- ``ems_mosquitto_factory`` (function): ``start(**env)`` runs Mosquitto, supervised and kept
  in sync with the test's ``database_url``, on a free port (extra ``EMS_*`` settings as
  keyword arguments, e.g. ``EMS_AUTH_FAIL_LIMIT="3"``) and returns a handle; all are
  stopped at teardown.
- ``ems_mosquitto`` (function): one with default settings.

A handle has ``host``, ``port``, ``database_url``, ``logs()``, ``stop()`` and
``kind == "mosquitto"``, plus ``wait_synced()``: Mosquitto learns of token changes
through a snapshot file (NOTIFY -> export -> file -> plugin reload, normally well under
200 ms), so a test that changes tokens and must not race calls it to wait until the
plugin runs on the database's current state. The supervisor starts Mosquitto only after
the access snapshot is written, so "accepts TCP" means "ready".
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from ems_access.store import export_snapshot
from ems_broker.mosquitto.snapshot import render_snapshot
from tests.support.pg import run_sync
from tests.support.processes import ServiceProcess, service_factory


class EmsMosquittoError(RuntimeError):
    """The supervised Mosquitto did not start or stop as asked."""


@dataclass
class EmsMosquittoProcess(ServiceProcess):
    kind: str = "mosquitto"

    name = "ems broker --mosquitto"
    log_name = "ems-mosquitto.log"
    error = EmsMosquittoError
    start_timeout_s = 120.0  # the first start on a machine compiles the plugin

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def snapshot_path(self) -> Path:
        return self.state_dir / "access.snapshot"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "ems_cli", "broker", "--mosquitto", "--log-level", "INFO"]

    def process_env(self) -> dict[str, str]:
        env = {
            "EMS_DATA_DIR": str(self.workdir),
            "EMS_MOSQUITTO_DIR": str(self.state_dir),
            **super().process_env(),
        }
        env.pop("EMS_BROKER", None)
        return env

    def wait_synced(self, timeout: float = 30.0) -> None:
        """Block until the plugin enforces exactly what the database holds now."""
        expected = run_sync(_export(self.database_url))
        loaded = self.snapshot_path.with_name(self.snapshot_path.name + ".loaded")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                text = self.snapshot_path.read_text()
                st = self.snapshot_path.stat()
                marker = loaded.read_text().split()
            except OSError:
                marker = []
                text = ""
            if text == expected and marker == [
                str(st.st_ino),
                str(st.st_mtime_ns // 1_000_000_000),
                str(st.st_mtime_ns % 1_000_000_000),
                str(st.st_size),
            ]:
                return
            time.sleep(0.02)
        raise EmsMosquittoError(f"access snapshot not in force after {timeout} s")


async def _export(database_url: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return render_snapshot(await export_snapshot(conn))
    finally:
        await conn.close()


@pytest.fixture
def ems_mosquitto_factory(database_url: str) -> Iterator[Callable[..., EmsMosquittoProcess]]:
    yield from service_factory(EmsMosquittoProcess, database_url, "ems-mosquitto-")


@pytest.fixture
def ems_mosquitto(
    ems_mosquitto_factory: Callable[..., EmsMosquittoProcess],
) -> EmsMosquittoProcess:
    return ems_mosquitto_factory()
