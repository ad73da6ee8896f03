"""Real Mosquitto brokers for tests: ``mosquitto_broker`` and ``mosquitto_factory``.

Each broker gets its own directory, a generated config and a free port on 127.0.0.1.
``stop()`` and ``start()`` reuse the same port, so a test can simulate an outage and let
clients reconnect to the same address. Everything started is stopped at teardown.

Run as root, Mosquitto 2 drops to the ``mosquitto`` user and then cannot read files in a
root-owned temporary directory, so the config pins ``user`` to whoever runs the tests.
"""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

MOSQUITTO = os.environ.get("EMS_TEST_MOSQUITTO", "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = os.environ.get("EMS_TEST_MOSQUITTO_PASSWD", "/usr/bin/mosquitto_passwd")
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


class MosquittoError(RuntimeError):
    """The broker did not start or stop as asked."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file (hashed with ``mosquitto_passwd``) for ``users``."""
    path.write_text("")
    for username, password in users.items():
        subprocess.run(
            [MOSQUITTO_PASSWD, "-b", str(path), username, password],
            check=True,
            capture_output=True,
        )
    return path


@dataclass
class MosquittoBroker:
    workdir: Path
    port: int
    host: str = "127.0.0.1"
    config_extra: str = ""
    password_file: Path | None = None
    acl_file: Path | None = None
    allow_anonymous: bool | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    starts: int = 0

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mosquitto.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def write_config(self) -> None:
        anonymous = self.allow_anonymous
        if anonymous is None:
            anonymous = self.password_file is None
        lines = [
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'true' if anonymous else 'false'}",
            "persistence false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if self.password_file is not None:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file is not None:
            lines.append(f"acl_file {self.acl_file}")
        # Later lines win in Mosquitto, so extras can override the defaults above.
        self.config_path.write_text("\n".join(lines) + "\n" + self.config_extra + "\n")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> None:
        if self.running:
            return
        self.write_config()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        self.starts += 1
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MosquittoError(
                    f"mosquitto exited with {self.process.returncode}:\n{self.log_text()}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise MosquittoError(f"mosquitto did not listen on {self.port}:\n{self.log_text()}")

    def stop(self) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL); its clients see the link drop."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)

    def restart(self) -> None:
        self.stop()
        self.start()


MosquittoFactory = Callable[..., MosquittoBroker]


@pytest.fixture
def mosquitto_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MosquittoFactory]:
    """``make(config_extra="", password_file=None, acl_file=None, allow_anonymous=None)``.

    Anonymous access is allowed unless a password file is given (or ``allow_anonymous``
    says otherwise). The broker is started before it is returned.
    """
    brokers: list[MosquittoBroker] = []

    def make(
        config_extra: str = "",
        password_file: Path | None = None,
        acl_file: Path | None = None,
        allow_anonymous: bool | None = None,
    ) -> MosquittoBroker:
        broker = MosquittoBroker(
            workdir=tmp_path_factory.mktemp("mosquitto"),
            port=free_port(),
            config_extra=config_extra,
            password_file=password_file,
            acl_file=acl_file,
            allow_anonymous=allow_anonymous,
        )
        brokers.append(broker)
        for attempt in range(3):
            try:
                broker.start()
                return broker
            except MosquittoError:
                # Another process may have taken the free port between probe and bind.
                if attempt == 2:
                    raise
                broker.port = free_port()
        raise AssertionError("unreachable")

    try:
        yield make
    finally:
        for broker in brokers:
            broker.stop()


@pytest.fixture
def mosquitto_broker(mosquitto_factory: MosquittoFactory) -> MosquittoBroker:
    """An anonymous broker on 127.0.0.1 and a free port; ``.stop()``/``.start()`` for outages."""
    return mosquitto_factory()
