"""Starting and stopping the brokers under test as subprocesses on free loopback ports.

- ``amqtt``: the built-in broker, ``python -m ems_broker``.
- ``mosquitto``: Mosquitto with the EMS auth plugin, ``ems broker --mosquitto`` (run as
  ``python -m ems_cli broker --mosquitto``).
- ``mosquitto-plain``: stock Mosquitto with a password file (see mosquitto_plain.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks import mosquitto_plain
from benchmarks.bench_db import Credentials
from benchmarks.idle_sessions import DISCONNECT, SessionRefusedError, open_session
from benchmarks.procmem import process_tree
from ems_timescale import free_port

logger = logging.getLogger(__name__)

KINDS = ("amqtt", "mosquitto", "mosquitto-plain")
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


class BrokerStartError(RuntimeError):
    """A broker did not come up, or exited."""


def mosquitto_plugin_available() -> bool:
    """Whether this checkout has ``ems broker --mosquitto`` yet."""
    try:
        return importlib.util.find_spec("ems_broker.mosquitto.__main__") is not None
    except ImportError:
        return False


@dataclass
class BrokerProcess:
    kind: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    host: str = "127.0.0.1"

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _command(kind: str, workdir: Path, port: int, credentials: Credentials) -> list[str]:
    if kind == "amqtt":
        return [sys.executable, "-m", "ems_broker", "--log-level", "WARNING"]
    if kind == "mosquitto":
        return [sys.executable, "-m", "ems_cli", "broker", "--mosquitto", "--log-level", "WARNING"]
    if kind == "mosquitto-plain":
        config = mosquitto_plain.write_config(workdir, port, credentials)
        return [str(mosquitto_plain.MOSQUITTO), "-c", str(config)]
    raise ValueError(f"unknown broker kind {kind!r}; choose from {KINDS}")


async def _wait_ready(broker: BrokerProcess, credentials: Credentials) -> None:
    """Ready means a device can log in, not just that the port is open.

    Mosquitto with the EMS plugin may accept TCP before it has the tokens; a real device
    CONNECT proves the whole path.
    """
    probe = credentials.warmup[0] if credentials.warmup else credentials.publisher
    deadline = time.monotonic() + READY_TIMEOUT_S
    last_error = "not tried"
    while time.monotonic() < deadline:
        if broker.process.poll() is not None:
            raise BrokerStartError(
                f"{broker.kind} exited with {broker.process.returncode}:\n{broker.log_tail()}"
            )
        try:
            session = await open_session(broker.host, broker.port, probe)
        except SessionRefusedError as exc:
            last_error = str(exc)
            await asyncio.sleep(0.2)
            continue
        session.writer.write(DISCONNECT)
        with contextlib.suppress(OSError):
            await session.reader.read()
        session.writer.close()
        return
    raise BrokerStartError(
        f"{broker.kind} not ready in {READY_TIMEOUT_S:.0f} s ({last_error}):\n{broker.log_tail()}"
    )


def _stop(broker: BrokerProcess) -> None:
    tree = process_tree(broker.pid)
    if broker.process.poll() is None:
        broker.process.send_signal(signal.SIGTERM)
        try:
            broker.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning("%s ignored SIGTERM; killing it", broker.kind)
            broker.process.kill()
            broker.process.wait(STOP_TIMEOUT_S)
    # Children the broker started (Mosquitto under the EMS supervisor) must not outlive it.
    for pid in tree[1:]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@asynccontextmanager
async def running_broker(
    kind: str, workdir: Path, database_url: str, credentials: Credentials
) -> AsyncIterator[BrokerProcess]:
    """Start `kind` on a free port, wait until a device can log in, stop it afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "EMS_DATABASE_URL": database_url,
        "EMS_MQTT_HOST": "127.0.0.1",
        "EMS_MQTT_PORT": str(port),
        "EMS_LOG_LEVEL": "WARNING",
        # ems broker --mosquitto keeps its config and snapshot here, not in /var/lib/ems.
        "EMS_DATA_DIR": str(workdir / "data"),
        "EMS_MOSQUITTO_DIR": str(workdir / "mosquitto"),
    }
    log_path = workdir / f"{kind}.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            _command(kind, workdir, port, credentials),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=workdir,
            start_new_session=True,
        )
    broker = BrokerProcess(kind, port, process, log_path)
    try:
        await _wait_ready(broker, credentials)
        logger.info("%s ready on 127.0.0.1:%d (pid %d)", kind, port, broker.pid)
        yield broker
    finally:
        await asyncio.to_thread(_stop, broker)
