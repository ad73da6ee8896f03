"""The load generators of the ingest benchmark, seen from the orchestrator.

Several ``benchmarks.ingest_load`` processes, each one paho connection speaking for many
devices. They publish only up to a credit the orchestrator raises as the database catches
up (``feed``), so the pipeline always has a backlog to chew on (it is saturated) but the
broker's per-session queue never overflows; an overflowing Mosquitto queue drops QoS 1
messages it has already acknowledged, which would make the count check meaningless.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from benchmarks.brokers import BrokerProcess
from benchmarks.ingest_load import device_ids
from benchmarks.relay import REPO_ROOT
from benchmarks.relay_worker import TOKEN_ENV

logger = logging.getLogger(__name__)

READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 90.0
FEED_INTERVAL_S = 0.25
_EOF = "\x00EOF"


class FleetError(RuntimeError):
    """A load generator failed to start, report or finish."""


@dataclass(frozen=True)
class FleetConfig:
    processes: int = 2
    devices: int = 500  # per process
    inflight: int = 1000
    #: Messages published but not yet in the database that the credit allows.
    backlog: int = 40_000
    start_s: float = 0.0  # epoch seconds of seq 0


@dataclass
class _Worker:
    prefix: str
    proc: Any
    lines: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    result: dict[str, Any] | None = None
    stderr: bytes = b""

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(ConnectionError, RuntimeError):
            self.proc.stdin.write(line.encode() + b"\n")

    async def expect(self, word: str, timeout: float) -> str:
        try:
            async with asyncio.timeout(timeout):
                while True:
                    line = await self.lines.get()
                    if line == _EOF:
                        tail = self.stderr.decode(errors="replace")[-2000:]
                        raise FleetError(f"{self.prefix} exited before {word}: {tail}")
                    if line.startswith(word):
                        return line
        except TimeoutError:
            raise FleetError(f"{self.prefix}: no {word} in {timeout:.0f} s") from None


class Fleet:
    def __init__(self, workers: list[_Worker], config: FleetConfig) -> None:
        self.workers = workers
        self.config = config
        self._mark_seq = 0

    @property
    def pids(self) -> list[int]:
        return [w.proc.pid for w in self.workers]

    def expected_rows(self, phases: int = 3) -> dict[str, int]:
        """Rows each device must have once every acknowledged message is stored."""
        expected: dict[str, int] = {}
        for worker in self.workers:
            assert worker.result is not None
            sent, ids = worker.result["acked"], device_ids(worker.prefix, self.config.devices)
            per, extra = divmod(sent, len(ids))
            for n, device_id in enumerate(ids):
                expected[device_id] = (per + (1 if n < extra else 0)) * phases
        return expected

    def allow(self, total_messages: int) -> None:
        share = -(-total_messages // len(self.workers))
        for worker in self.workers:
            worker.send(f"LIMIT {share}")

    async def feed(self, stored_messages: Callable[[], Awaitable[int]]) -> None:
        """Keep the credit at what the database holds plus the allowed backlog; runs until
        cancelled."""
        base = await stored_messages()
        while True:
            self.allow(await stored_messages() - base + self.config.backlog)
            await asyncio.sleep(FEED_INTERVAL_S)

    async def mark(self) -> int:
        """Messages the broker has acknowledged to all publishers so far."""
        self._mark_seq += 1
        tag = f"m{self._mark_seq}"
        for worker in self.workers:
            worker.send(f"MARK {tag}")
        total = 0
        for worker in self.workers:
            line = await worker.expect(f"MARK {tag} ", READY_TIMEOUT_S)
            total += int(line.split()[2])
        return total

    async def stop(self) -> dict[str, int]:
        """Stop publishing; wait for every PUBACK; the totals sent and acknowledged."""
        for worker in self.workers:
            worker.send("STOP")
        for worker in self.workers:
            line = await worker.expect("RESULT ", STOP_TIMEOUT_S)
            worker.result = json.loads(line.removeprefix("RESULT "))
        results = [w.result for w in self.workers if w.result is not None]
        return {key: sum(r[key] for r in results) for key in ("sent", "acked")}


async def _pump(worker: _Worker) -> None:
    assert worker.proc.stdout is not None and worker.proc.stderr is not None
    while line := await worker.proc.stdout.readline():
        worker.lines.put_nowait(line.decode(errors="replace").strip())
    worker.stderr = await worker.proc.stderr.read()
    worker.lines.put_nowait(_EOF)


async def _spawn(broker: BrokerProcess, token: str, prefix: str, config: FleetConfig) -> _Worker:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.ingest_load",
        "--port",
        str(broker.port),
        "--host",
        broker.host,
        "--client-id",
        f"bench-load-{prefix}",
        "--username",
        f"bench-load-{prefix}",
        "--prefix",
        prefix,
        "--devices",
        str(config.devices),
        "--inflight",
        str(config.inflight),
        "--start-s",
        str(config.start_s),
        env={**os.environ, TOKEN_ENV: token},
        cwd=REPO_ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return _Worker(prefix, proc)


@asynccontextmanager
async def running_fleet(
    broker: BrokerProcess, tokens: list[str], prefix: str, config: FleetConfig
) -> AsyncIterator[Fleet]:
    """Start ``config.processes`` load generators (device ids ``<prefix>-p<n>-dNNNN``),
    connected and publishing nothing until ``allow``/``feed``; kill what is left on exit."""
    workers: list[_Worker] = []
    pumps: list[asyncio.Task[None]] = []
    try:
        for n in range(config.processes):
            worker = await _spawn(broker, tokens[n], f"{prefix}-p{n}", config)
            workers.append(worker)
            pumps.append(asyncio.create_task(_pump(worker), name=f"bench-pump-{worker.prefix}"))
        for worker in workers:
            await worker.expect("READY", READY_TIMEOUT_S)
        yield Fleet(workers, config)
    finally:
        for worker in workers:
            if worker.proc.returncode is None:
                worker.proc.kill()
            await worker.proc.wait()
        for pump in pumps:
            pump.cancel()


def fleet_device_ids(prefix: str, config: FleetConfig) -> list[str]:
    return [
        device_id
        for n in range(config.processes)
        for device_id in device_ids(f"{prefix}-p{n}", config.devices)
    ]
