"""The two pipelines under test, each a subprocess started and stopped around its phase.

- ``platform``: the real thing, ``python -m ems_platform`` (API on a free port, ingest on),
  as deployed; whatever EMS_INGEST_* settings are in our environment reach it. With
  ``workers > 1``, that many such processes split the load through an MQTT shared
  subscription (``EMS_INGEST_SHARED_GROUP``), each with its own client id and API port.
- ``naive``: ``benchmarks.ingest_naive`` (paho auto-ack, one INSERT per row).

Either is handed to the phase as :class:`Pipelines`, the group of its processes.
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
#: EMS_INGEST_SHARED_GROUP of the workers unless the environment names one.
SHARED_GROUP = "bench"
DEFAULT_CLIENT_ID = "ems-platform-ingest"


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


@dataclass
class Pipelines:
    """The processes of one pipeline under test: one, or N platform workers sharing the load."""

    name: str
    members: list[Pipeline]

    @property
    def pids(self) -> list[int]:
        return [member.pid for member in self.members]

    def alive(self) -> None:
        for member in self.members:
            member.alive()

    def worker_metrics(self) -> list[dict[str, float]]:
        return [member.metrics() for member in self.members]

    def metrics(self) -> dict[str, float]:
        """Every worker's samples added up: counters and histogram sums/counts add."""
        return summed(self.worker_metrics())


def summed(samples: list[dict[str, float]]) -> dict[str, float]:
    """Samples of several workers added up; ``*_created`` (timestamps) are left out."""
    if len(samples) == 1:
        return dict(samples[0])
    total: dict[str, float] = {}
    for one in samples:
        for name, value in one.items():
            if not name.partition("{")[0].endswith("_created"):
                total[name] = total.get(name, 0.0) + value
    return total


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


def _platform_env(
    broker: BrokerProcess, dsn: str, service_token: str, worker: int | None
) -> dict[str, str]:
    env = {
        **os.environ,
        "EMS_DATABASE_URL": dsn,
        "EMS_MQTT_HOST": broker.host,
        "EMS_MQTT_PORT": str(broker.port),
        "EMS_SERVICE_TOKEN": service_token,
        "EMS_BROKER": "amqtt" if broker.kind == "amqtt" else "mosquitto",
        "EMS_LOG_LEVEL": os.environ.get("EMS_LOG_LEVEL", "WARNING"),
    }
    if worker is not None:
        # One persistent MQTT session per worker, all in one $share group: the broker hands
        # each message to one of them, as in a scaled-out deployment.
        base = os.environ.get("EMS_INGEST_CLIENT_ID", DEFAULT_CLIENT_ID)
        env["EMS_INGEST_CLIENT_ID"] = f"{base}-w{worker}"
        env["EMS_INGEST_SHARED_GROUP"] = os.environ.get("EMS_INGEST_SHARED_GROUP", SHARED_GROUP)
    return env


def _start_platform(
    broker: BrokerProcess, dsn: str, service_token: str, workdir: Path, worker: int | None
) -> Pipeline:
    port = free_port()
    suffix = "" if worker is None else f"-w{worker}"
    log_path = workdir / f"platform{suffix}.log"
    command = [sys.executable, "-m", "ems_platform", "--host", "127.0.0.1", "--port", str(port)]
    env = _platform_env(broker, dsn, service_token, worker)
    return Pipeline(f"platform{suffix}", _popen(command, env, log_path), log_path, api_port=port)


async def _ready(pipeline: Pipeline) -> None:
    """Until /readyz is 200: MQTT subscribed and database writes work."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        pipeline.alive()
        with contextlib.suppress(OSError):
            url = f"http://127.0.0.1:{pipeline.api_port}/readyz"
            if (await asyncio.to_thread(_get, url))[0] == 200:
                break
        if time.monotonic() > deadline:
            raise PipelineError(
                f"{pipeline.name} not ready in {READY_TIMEOUT_S:.0f} s:\n{pipeline.log_tail()}"
            )
        await asyncio.sleep(0.2)
    logger.info(
        "%s ingest ready (pid %d, API port %d)", pipeline.name, pipeline.pid, pipeline.api_port
    )


@asynccontextmanager
async def running_platform(
    broker: BrokerProcess, dsn: str, service_token: str, workdir: Path, workers: int = 1
) -> AsyncIterator[Pipelines]:
    """``python -m ems_platform`` x `workers`, once every one's /readyz is 200.

    A single worker runs as a lone deployment does (default client id, no shared group).
    With more, worker 0 starts alone first: it installs the service token and the broker
    learns it before the others log in with it, so none of them starts on a refused login.
    """
    if workers > 1 and broker.kind == "amqtt":
        raise PipelineError("several ingest workers need $share subscriptions; amqtt has none")
    group = Pipelines("platform", [])
    try:
        first = _start_platform(broker, dsn, service_token, workdir, 0 if workers > 1 else None)
        group.members.append(first)
        await _ready(first)
        for worker in range(1, workers):
            group.members.append(_start_platform(broker, dsn, service_token, workdir, worker))
        await asyncio.gather(*(_ready(member) for member in group.members[1:]))
        yield group
    finally:
        await asyncio.gather(*(asyncio.to_thread(_stop, m) for m in group.members))


@asynccontextmanager
async def running_naive(
    broker: BrokerProcess, dsn: str, token: str, workdir: Path, log_name: str = "naive.log"
) -> AsyncIterator[Pipelines]:
    """The naive subscriber, once it printed READY (subscribed)."""
    log_path = workdir / log_name
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
        yield Pipelines("naive", [pipeline])
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
