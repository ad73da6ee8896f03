"""The two pipelines under test, each a subprocess started and stopped around its phase.

- ``platform``: the real thing, ``python -m ems_platform`` (API on a free port, ingest on),
  as deployed; whatever EMS_INGEST_* settings are in our environment reach it.
- ``naive``: ``benchmarks.ingest_naive`` (paho auto-ack, one INSERT per row).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.brokers import BrokerProcess
from benchmarks.relay import REPO_ROOT
from benchmarks.relay_worker import TOKEN_ENV
from ems_timescale import free_port

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0


class PipelineError(RuntimeError):
    """A pipeline did not come up, or died."""


@dataclass
class Pipeline:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    api_port: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise PipelineError(
                f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"
            )

    def metrics(self) -> dict[str, float]:
        """The platform's Prometheus samples (name{labels} -> value); {} for the naive one."""
        if self.api_port is None:
            return {}
        try:
            text = _get(f"http://127.0.0.1:{self.api_port}/metrics")[1]
        except OSError:
            return {}
        found: dict[str, float] = {}
        for line in text.splitlines():
            match = re.match(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$", line)
            if match and not line.startswith("#"):
                with contextlib.suppress(ValueError):
                    found[match.group(1)] = float(match.group(2))
        return found


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 (loopback)
            return int(answer.status), answer.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def _stop(pipeline: Pipeline) -> None:
    if pipeline.process.poll() is None:
        pipeline.process.send_signal(signal.SIGTERM)
        try:
            pipeline.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            logger.warning(
                "%s ignored SIGTERM for %.0f s; killing it", pipeline.name, STOP_TIMEOUT_S
            )
            pipeline.process.kill()
            pipeline.process.wait()


def _popen(command: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            command,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            cwd=REPO_ROOT,
            start_new_session=True,
        )


@asynccontextmanager
async def running_platform(
    broker: BrokerProcess, dsn: str, service_token: str, workdir: Path
) -> AsyncIterator[Pipeline]:
    """``python -m ems_platform`` until /readyz says MQTT is subscribed and writes work."""
    port = free_port()
    env = {
        **os.environ,
        "EMS_DATABASE_URL": dsn,
        "EMS_MQTT_HOST": broker.host,
        "EMS_MQTT_PORT": str(broker.port),
        "EMS_SERVICE_TOKEN": service_token,
        "EMS_BROKER": "amqtt" if broker.kind == "amqtt" else "mosquitto",
        "EMS_LOG_LEVEL": os.environ.get("EMS_LOG_LEVEL", "WARNING"),
    }
    command = [sys.executable, "-m", "ems_platform", "--host", "127.0.0.1", "--port", str(port)]
    pipeline = Pipeline(
        "platform",
        _popen(command, env, workdir / "platform.log"),
        workdir / "platform.log",
        api_port=port,
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            pipeline.alive()
            with contextlib.suppress(OSError):
                if (await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/readyz"))[0] == 200:
                    break
            if time.monotonic() > deadline:
                raise PipelineError(
                    f"platform not ready in {READY_TIMEOUT_S:.0f} s:\n{pipeline.log_tail()}"
                )
            await asyncio.sleep(0.2)
        logger.info("platform ingest ready (pid %d, API port %d)", pipeline.pid, port)
        yield pipeline
    finally:
        await asyncio.to_thread(_stop, pipeline)


@asynccontextmanager
async def running_naive(
    broker: BrokerProcess, dsn: str, token: str, workdir: Path
) -> AsyncIterator[Pipeline]:
    """The naive subscriber, once it printed READY (subscribed)."""
    log_path = workdir / "naive.log"
    command = [
        sys.executable,
        "-m",
        "benchmarks.ingest_naive",
        "--host",
        broker.host,
        "--port",
        str(broker.port),
        "--dsn",
        dsn,
    ]
    pipeline = Pipeline(
        "naive", _popen(command, {**os.environ, TOKEN_ENV: token}, log_path), log_path
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "READY" not in pipeline.log_tail():
            pipeline.alive()
            if time.monotonic() > deadline:
                raise PipelineError(f"naive ingest not ready:\n{pipeline.log_tail()}")
            await asyncio.sleep(0.1)
        yield pipeline
    finally:
        if pipeline.process.stdin is not None:
            with contextlib.suppress(OSError):
                pipeline.process.stdin.close()  # EOF: disconnect and report
        await asyncio.to_thread(_stop_naive, pipeline)


def _stop_naive(pipeline: Pipeline) -> None:
    try:
        pipeline.process.wait(10)
    except subprocess.TimeoutExpired:
        _stop(pipeline)
