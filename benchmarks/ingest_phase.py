"""One measured phase: a pipeline under saturating load, a fixed window, then the count check.

A pipeline may be several processes (platform workers in a $share group): its CPU is the
sum over their process trees, its Prometheus counters and histograms are added up, and the
window also keeps each worker's own share.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.brokers import BrokerProcess
from benchmarks.ingest_db import Committed, Progress, count_check, slice_rates
from benchmarks.ingest_fleet import Fleet, FleetConfig, FleetError, running_fleet
from benchmarks.ingest_pipelines import Pipelines, summed
from benchmarks.ingest_profile import record_all
from benchmarks.procmem import peak_rss_kib, tree_cpu_seconds, tree_rss_kib

logger = logging.getLogger(__name__)

PHASES_PER_SAMPLE = 3
POLL_S = 0.5
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class PhaseConfig:
    name: str  # "real" | "naive"
    warmup: float
    window: float
    drain_timeout: float
    profile_seconds: float = 0.0
    profile_out: Path | None = None


@dataclass(frozen=True)
class _Edge:
    committed: Committed
    acked: int
    cpu: dict[str, float]
    #: One entry per worker of the pipeline, in worker order.
    worker_cpu: list[float]
    worker_metrics: list[dict[str, float]]

    @property
    def metrics(self) -> dict[str, float]:
        return summed(self.worker_metrics)


def _machine_seconds() -> tuple[float, float]:
    """CPU seconds all cores spent running anything on this VM, and stolen from it by the
    hypervisor (wanted to run, another guest had the host's CPU), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    # user nice system idle iowait irq softirq steal
    busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6]
    return busy / _CLOCK_TICKS, fields[7] / _CLOCK_TICKS


def _cpu(pids: dict[str, list[int]]) -> dict[str, float]:
    cpu = {name: sum(tree_cpu_seconds(p) for p in group) for name, group in pids.items()}
    # Whatever else runs on the box (other test runs...) competes for the same two cores,
    # and so do other guests of the host (steal); the report shows how much they took.
    cpu["machine"], cpu["steal"] = _machine_seconds()
    return cpu


async def _edge(
    progress: Progress,
    db_turn: asyncio.Lock,
    fleet: Fleet,
    pipe: Pipelines,
    pids: dict[str, list[int]],
) -> _Edge:
    acked = await fleet.mark()
    cpu = _cpu(pids)
    worker_cpu = [tree_cpu_seconds(pid) for pid in pipe.pids]
    metrics = await asyncio.to_thread(pipe.worker_metrics)
    async with db_turn:
        committed = await progress.committed()
    return _Edge(committed, acked, cpu, worker_cpu, metrics)


def _feeding(feeder: asyncio.Task[None]) -> None:
    """Raise if the credit feeder died: the load stopped, so the window measured a drain."""
    if feeder.done() and not feeder.cancelled() and feeder.exception() is not None:
        raise FleetError(f"feeding the load credit failed: {feeder.exception()!r}")


def _per_second(a: float, b: float, seconds: float) -> float:
    return round((b - a) / seconds, 1) if seconds > 0 else 0.0


def _backlog(edge: _Edge, base: Committed) -> int:
    """Messages this phase's load had PUBACKed and the database had not yet committed (the
    table also holds earlier phases' rows: ``base`` is what it held when this one began)."""
    return edge.acked - (edge.committed.readings - base.readings) // PHASES_PER_SAMPLE


def _window(start: _Edge, end: _Edge, base: Committed, real: bool) -> dict[str, Any]:
    seconds = end.committed.at - start.committed.at
    rows = end.committed.readings - start.committed.readings
    messages = (
        end.committed.messages - start.committed.messages if real else rows // PHASES_PER_SAMPLE
    )
    result: dict[str, Any] = {
        "seconds": round(seconds, 2),
        "db_rows": rows,
        "db_rows_per_s": _per_second(0, rows, seconds),
        "db_msgs_per_s": _per_second(0, messages, seconds),
        "publisher_acked_msgs_per_s": _per_second(start.acked, end.acked, seconds),
        "wal_mib_per_s": round(
            (end.committed.wal_bytes - start.committed.wal_bytes) / 2**20 / seconds, 1
        )
        if seconds > 0
        else 0.0,
        "wal_bytes_per_msg": round((end.committed.wal_bytes - start.committed.wal_bytes) / messages)
        if messages
        else None,
        # Published but not yet committed: > 0 at both edges means the pipeline never
        # waited for load during the window.
        "backlog_msgs_at_start": _backlog(start, base),
        "cpu_cores": {
            name: round((end.cpu[name] - start.cpu[name]) / seconds, 2) for name in end.cpu
        },
    }
    cores = result["cpu_cores"]
    cores["other"] = round(
        cores["machine"] - sum(v for k, v in cores.items() if k not in ("machine", "steal")), 2
    )
    result["cpu_us_per_msg"] = {
        name: round((end.cpu[name] - start.cpu[name]) / messages * 1e6, 1) if messages else None
        for name in end.cpu
    }
    ingest_us = result["cpu_us_per_msg"].get("ingest")
    if real and ingest_us:
        # A worker is one asyncio thread: one core is all it can ever use. With several
        # workers this is still per core (the CPU per message is summed over them).
        result["ingest_one_core_ceiling_msgs_per_s"] = round(1e6 / ingest_us)
    result.update(_batch_averages(start.metrics, end.metrics))
    if len(end.worker_cpu) > 1:
        result["per_worker"] = [
            {
                "cpu_cores": round((c1 - c0) / seconds, 2),
                "rows_stored_per_s": _per_second(
                    m0.get(_STORED, 0.0), m1.get(_STORED, 0.0), seconds
                ),
                **_batch_averages(m0, m1),
            }
            for c0, c1, m0, m1 in zip(
                start.worker_cpu,
                end.worker_cpu,
                start.worker_metrics,
                end.worker_metrics,
                strict=True,
            )
        ]
    return result


_STORED = "ems_ingest_samples_stored_total"


def _batch_averages(m0: dict[str, float], m1: dict[str, float]) -> dict[str, Any]:
    """Mean commit time and batch size over the window, from the histograms' sum and count."""
    found: dict[str, Any] = {}
    for label, name in (
        ("commit_s", "ems_ingest_commit_seconds"),
        ("batch_rows", "ems_ingest_batch_rows"),
    ):
        count = m1.get(f"{name}_count", 0.0) - m0.get(f"{name}_count", 0.0)
        if count:
            total = m1.get(f"{name}_sum", 0.0) - m0.get(f"{name}_sum", 0.0)
            found[f"avg_{label}"] = round(total / count, 4)
            found["batches"] = int(count)
    return found


async def _drain(progress: Progress, base: Committed, rows: int, timeout: float) -> float | None:
    """Seconds until `rows` more readings than `base` are committed; None if they never are."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if (await progress.committed()).readings - base.readings >= rows:
            return round(time.monotonic() - started, 1)
        await asyncio.sleep(POLL_S)
    return None


async def measure_phase(
    config: PhaseConfig,
    pipeline: AbstractAsyncContextManager[Pipelines],
    broker: BrokerProcess,
    progress: Progress,
    fleet_config: FleetConfig,
    load_tokens: list[str],
    prefix: str,
    postmaster_pid: int | None,
) -> dict[str, Any]:
    real = config.name == "real"
    base = await progress.committed()
    result: dict[str, Any] = {"pipeline": config.name, "device_prefix": prefix}
    async with pipeline as pipe, running_fleet(broker, load_tokens, prefix, fleet_config) as fleet:
        if real:
            result["workers"] = len(pipe.members)
        pids = {
            "ingest": pipe.pids,
            "broker": [broker.pid],
            "postgres": [postmaster_pid] if postmaster_pid else [],
            "load": fleet.pids,
        }

        # The feeder and the window edges share one connection, and asyncpg refuses a
        # second query while one runs: that error would end the feeder, and with it the
        # load, silently.
        db_turn = asyncio.Lock()

        # The feeder's readings of the rows inserted so far, kept for the window's slices.
        estimates: list[tuple[float, int]] = []

        async def stored_messages() -> int:
            async with db_turn:
                rows = await progress.inserted_estimate()
            estimates.append((time.monotonic(), rows))
            return rows // PHASES_PER_SAMPLE

        feeder = asyncio.create_task(fleet.feed(stored_messages), name="bench-feed")
        try:
            logger.info("%s: warming up for %.0f s", prefix, config.warmup)
            await asyncio.sleep(config.warmup)
            pipe.alive()
            start = await _edge(progress, db_turn, fleet, pipe, pids)
            logger.info("%s: measuring for %.0f s", prefix, config.window)
            await asyncio.sleep(config.window)
            end = await _edge(progress, db_turn, fleet, pipe, pids)
            pipe.alive()
            _feeding(feeder)
            result["window"] = _window(start, end, base, real)
            result["window"]["backlog_msgs_at_end"] = _backlog(end, base)
            result["window"]["slice_msgs_per_s"] = [
                round(rate / PHASES_PER_SAMPLE)
                for rate in slice_rates(estimates, start.committed.at, end.committed.at)
            ]
            # Memory of the ingest process(es): resident at the window's end, and the peak
            # since start (batches of EMS_INGEST_BATCH_ROWS rows, two in hand at a time).
            result["window"]["ingest_rss_mib"] = round(
                sum(tree_rss_kib(pid) for pid in pipe.pids) / 1024, 1
            )
            result["window"]["ingest_peak_rss_mib"] = round(
                sum(peak_rss_kib(pid) for pid in pipe.pids) / 1024, 1
            )
            if config.profile_seconds and config.profile_out is not None:
                logger.info("%s: profiling the ingest for %.0f s", prefix, config.profile_seconds)
                result["profile"] = await record_all(
                    pipe.pids, config.profile_seconds, config.profile_out
                )
        finally:
            feeder.cancel()
        totals = await fleet.stop()
        result["published"] = totals
        logger.info(
            "%s: published %d messages; waiting for the rest to commit", prefix, totals["acked"]
        )
        expected = fleet.expected_rows(PHASES_PER_SAMPLE)
        result["drain_seconds"] = await _drain(
            progress, base, sum(expected.values()), config.drain_timeout
        )
        result["metrics_end"] = {
            k: v
            for k, v in (await asyncio.to_thread(pipe.metrics)).items()
            if k.startswith(
                (
                    "ems_ingest_duplicates",
                    "ems_ingest_quarantined",
                    "ems_ingest_samples_stored",
                    "ems_ingest_write_failures",
                    "ems_ingest_acks",
                )
            )
        }
    result["count_check"] = count_check(expected, await progress.rows_by_device(prefix))
    if real:
        verdicts = await progress.verdicts(prefix)
        result["raw_events"] = verdicts
        result["count_check"]["duplicates"] = verdicts.get("duplicate", 0)
        result["count_check"]["ok"] = (
            result["count_check"]["ok"]
            and verdicts.get("duplicate", 0) == 0
            and sum(verdicts.values()) == totals["acked"]
        )
        result["flags"] = await progress.flags(prefix)
    return result
