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

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest

from ems_access.store import export_snapshot
from ems_broker.mosquitto.snapshot import render_snapshot
from tests.support.pg import run_sync

START_TIMEOUT_S = 120.0  # the first start on a machine compiles the plugin
STOP_TIMEOUT_S = 20.0
START_ATTEMPTS = 3


class EmsMosquittoError(RuntimeError):
    """The supervised Mosquitto did not start or stop as asked."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@dataclass
class EmsMosquittoProcess:
    database_url: str
    env: dict[str, str]
    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0
    kind: str = "mosquitto"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / "ems-mosquitto.log"

    @property
    def state_dir(self) -> Path:
        return self.workdir / "state"

    @property
    def snapshot_path(self) -> Path:
        return self.state_dir / "access.snapshot"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

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

    def start(self) -> None:
        for _ in range(START_ATTEMPTS):
            self.port = _free_port()
            if self._start_once():
                return
        raise EmsMosquittoError(f"ems broker --mosquitto did not start:\n{self.logs()[-4000:]}")

    def _start_once(self) -> bool:
        env = {
            **os.environ,
            "EMS_DATA_DIR": str(self.workdir),
            "EMS_MOSQUITTO_DIR": str(self.state_dir),
            **self.env,
            "EMS_DATABASE_URL": self.database_url,
            "EMS_MQTT_HOST": self.host,
            "EMS_MQTT_PORT": str(self.port),
        }
        env.pop("EMS_BROKER", None)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ems_cli", "broker", "--mosquitto", "--log-level", "INFO"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # e.g. the port was taken in the meantime: try another
            if _accepts(self.host, self.port):
                return True
            time.sleep(0.05)
        self.stop()
        raise EmsMosquittoError(
            f"ems broker --mosquitto not ready in {START_TIMEOUT_S} s:\n{self.logs()[-4000:]}"
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)
            raise EmsMosquittoError("ems broker --mosquitto ignored SIGTERM") from None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


async def _export(database_url: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return render_snapshot(await export_snapshot(conn))
    finally:
        await conn.close()


@pytest.fixture
def ems_mosquitto_factory(database_url: str) -> Iterator[Callable[..., EmsMosquittoProcess]]:
    started: list[EmsMosquittoProcess] = []
    workdir = Path(tempfile.mkdtemp(prefix="ems-mosquitto-"))

    def start(**env: str) -> EmsMosquittoProcess:
        broker = EmsMosquittoProcess(database_url, env, workdir / str(len(started)))
        broker.workdir.mkdir()
        started.append(broker)
        broker.start()
        return broker

    try:
        yield start
    finally:
        errors = []
        for broker in started:
            try:
                broker.stop()
            except EmsMosquittoError as exc:
                errors.append(exc)
        shutil.rmtree(workdir, ignore_errors=True)
        if errors:
            raise errors[0]


@pytest.fixture
def ems_mosquitto(
    ems_mosquitto_factory: Callable[..., EmsMosquittoProcess],
) -> EmsMosquittoProcess:
    return ems_mosquitto_factory()
