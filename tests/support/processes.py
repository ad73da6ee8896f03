"""Services that tests run as real subprocesses on a free loopback port.

``ServiceProcess`` starts a command on a free port (retrying on another port if the process
exits early, e.g. because the port was taken in the meantime), waits until the port accepts
TCP, appends the output to a log file in its working directory and stops it with SIGTERM.
A subclass names the command, the log file, its error type and its timeouts.
``service_factory`` is the body of a ``*_factory`` fixture: it starts handles on request
and stops them all, and removes their directories, at teardown.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

from tests.support.ports import free_port


def accepts(host: str, port: int) -> bool:
    """Whether something accepts a TCP connection on ``host:port`` right now."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@dataclass
class ServiceProcess:
    """One service subprocess that talks to ``database_url`` and listens on ``host:port``."""

    database_url: str
    env: dict[str, str]
    workdir: Path
    host: str = "127.0.0.1"
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    name: ClassVar[str]  # for error messages, e.g. "ems broker"
    log_name: ClassVar[str]
    error: ClassVar[type[RuntimeError]]
    start_timeout_s: ClassVar[float]
    stop_timeout_s: ClassVar[float] = 20.0
    start_attempts: ClassVar[int] = 3

    def command(self) -> list[str]:
        raise NotImplementedError

    def process_env(self) -> dict[str, str]:
        """The environment for one start (``self.port`` is already chosen)."""
        return {
            **os.environ,
            **self.env,
            "EMS_DATABASE_URL": self.database_url,
            "EMS_MQTT_HOST": self.host,
            "EMS_MQTT_PORT": str(self.port),
        }

    @property
    def log_path(self) -> Path:
        return self.workdir / self.log_name

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        for _ in range(self.start_attempts):
            self.port = free_port(self.host)
            if self._start_once():
                return
        raise self.error(f"{self.name} did not start; log:\n{self.logs()[-4000:]}")

    def _start_once(self) -> bool:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                env=self.process_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # e.g. the port was taken in the meantime: try another
            if accepts(self.host, self.port):
                return True
            time.sleep(0.05)
        self.stop()
        raise self.error(
            f"{self.name} not ready in {self.start_timeout_s} s:\n{self.logs()[-4000:]}"
        )

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(self.stop_timeout_s)
            raise self.error(f"{self.name} ignored SIGTERM") from None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


S = TypeVar("S", bound=ServiceProcess)


def service_factory(cls: type[S], database_url: str, prefix: str) -> Iterator[Callable[..., S]]:
    """Yield ``start(**env)``, which starts a ``cls`` in a fresh directory; stop all after."""
    started: list[S] = []
    workdir = Path(tempfile.mkdtemp(prefix=prefix))

    def start(**env: str) -> S:
        service = cls(database_url, env, workdir / str(len(started)))
        service.workdir.mkdir()
        started.append(service)
        service.start()
        return service

    try:
        yield start
    finally:
        errors = []
        for service in started:
            try:
                service.stop()
            except cls.error as exc:
                errors.append(exc)
        shutil.rmtree(workdir, ignore_errors=True)
        if errors:
            raise errors[0]
