"""`ems up` as a real subprocess for the end-to-end tests.

``start_ems_up(devices, broker, prefix)`` starts ``ems up --devices N --broker B`` at DEBUG
with fresh free ports, a fresh admin token and a fresh data directory under /tmp, and
collects everything it prints in a background thread. ``stop()`` stops it (SIGTERM, then
SIGKILL after 60 s); ``close()`` also removes the data directory. ``wait_for`` polls a
condition, bounded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from ems_access.tokens import generate_token
from tests.support.ports import free_port

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll until check() returns something truthy; fail with `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@dataclass
class EmsUp:
    """A running ``ems up``: its process, admin token, data directory, ports and output."""

    process: subprocess.Popen[str]
    admin_token: str
    data_dir: Path
    mqtt_port: int
    api_port: int
    ws_port: int
    output: list[str] = field(default_factory=list)
    reader: threading.Thread | None = field(default=None, repr=False)

    def text(self) -> str:
        return "\n".join(self.output)

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it takes over 60 s) and wait for the output to be read."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.reader is not None:
            self.reader.join(timeout=10)

    def close(self) -> None:
        """``stop()``, then remove the data directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


U = TypeVar("U", bound=EmsUp)


def start_ems_up(devices: int, broker: str, prefix: str, cls: type[U]) -> U:
    """Start ``ems up`` (described by ``cls``, an ``EmsUp``); the caller must ``close()`` it."""
    # /tmp, not pytest's 0700 tmp dirs: the embedded PostgreSQL runs as `postgres` when we are root.
    data_dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(data_dir, 0o711)  # noqa: S103 - traversable by the `postgres` user, not listable
    admin = generate_token()
    ports = {name: free_port() for name in ("mqtt", "api", "ws")}
    env = dict(
        os.environ,
        EMS_DATA_DIR=str(data_dir / "state"),
        EMS_ADMIN_TOKEN=admin,
        EMS_MQTT_PORT=str(ports["mqtt"]),
        EMS_API_PORT=str(ports["api"]),
        EMS_WS_PORT=str(ports["ws"]),
        EMS_LOG_LEVEL="DEBUG",
    )
    env.pop("EMS_DATABASE_URL", None)
    ems = shutil.which("ems") or str(Path(sys.executable).with_name("ems"))
    process = subprocess.Popen(
        [ems, "up", "--devices", str(devices), "--broker", broker],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    up = cls(process, admin, data_dir, ports["mqtt"], ports["api"], ports["ws"])

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            up.output.append(line.rstrip())

    up.reader = threading.Thread(target=pump, daemon=True)
    up.reader.start()
    return up
