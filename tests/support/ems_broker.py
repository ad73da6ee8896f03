"""pytest plugin: the EMS broker (``python -m ems_broker``) as a real subprocess.

- ``ems_broker_factory`` (function): ``start(**env)`` runs a broker on a free port against
  the test's ``database_url`` (extra ``EMS_*`` settings as keyword arguments, e.g.
  ``EMS_MQTT_MAX_PACKET="4096"``) and returns a handle; all are stopped at teardown.
- ``ems_broker`` (function): one broker with default settings.

A handle has ``host``, ``port``, ``database_url``, ``logs()`` and ``stop()``. The broker
opens its port only after its database pool is up, so "accepts TCP" means "ready".
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

import pytest

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
START_ATTEMPTS = 3


class EmsBrokerError(RuntimeError):
    """The broker did not start or stop as asked."""


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
class EmsBrokerProcess:
    database_url: str
    env: dict[str, str]
    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / "ems-broker.log"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        for _ in range(START_ATTEMPTS):
            self.port = _free_port()
            if self._start_once():
                return
        raise EmsBrokerError(f"ems broker did not start; log:\n{self.logs()[-4000:]}")

    def _start_once(self) -> bool:
        env = {
            **os.environ,
            **self.env,
            "EMS_DATABASE_URL": self.database_url,
            "EMS_MQTT_HOST": self.host,
            "EMS_MQTT_PORT": str(self.port),
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ems_broker", "--log-level", "INFO"],
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
        raise EmsBrokerError(f"ems broker not ready in {START_TIMEOUT_S} s:\n{self.logs()[-4000:]}")

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
            raise EmsBrokerError("ems broker ignored SIGTERM") from None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture
def ems_broker_factory(database_url: str) -> Iterator[Callable[..., EmsBrokerProcess]]:
    started: list[EmsBrokerProcess] = []
    workdir = Path(tempfile.mkdtemp(prefix="ems-broker-"))

    def start(**env: str) -> EmsBrokerProcess:
        broker = EmsBrokerProcess(database_url, env, workdir / str(len(started)))
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
            except EmsBrokerError as exc:
                errors.append(exc)
        shutil.rmtree(workdir, ignore_errors=True)
        if errors:
            raise errors[0]


@pytest.fixture
def ems_broker(ems_broker_factory: Callable[..., EmsBrokerProcess]) -> EmsBrokerProcess:
    return ems_broker_factory()
