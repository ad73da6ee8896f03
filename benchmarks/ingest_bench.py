"""Ingest benchmark: sustained msg/s and rows/s from devices through the broker into the DB.

``uv run python -m benchmarks.ingest_bench`` starts a throwaway, *durable* PostgreSQL +
TimescaleDB (fsync on, default synchronous_commit: a commit benchmark on a database that
does not flush would measure nothing), then per broker: the naive pipeline, the real one
(``python -m ems_platform``) and the naive one again, each under the same saturating load
from several publisher processes; rates are counted in the database over a fixed window
after a warm-up, and the ratio is taken against the faster naive window. The real phase
is followed by a py-spy profile of the ingest and by the count check (rows stored ==
samples x 3 per device, no duplicates). ``--workers N`` runs the real phase as N platform
processes in an MQTT shared-subscription group (Mosquitto only).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.bench_db import create_credentials, throwaway_database
from benchmarks.broker_bench import _remove, _workdir
from benchmarks.brokers import BrokerStartError, running_broker
from benchmarks.ingest_db import (
    Progress,
    make_publisher_tokens,
    make_service_token,
    register_devices,
)
from benchmarks.ingest_fleet import FleetConfig, FleetError, fleet_device_ids
from benchmarks.ingest_phase import PhaseConfig, measure_phase
from benchmarks.ingest_pipelines import PipelineError, running_naive, running_platform
from benchmarks.ingest_report import naive_ratio, table
from benchmarks.relay import REPO_ROOT
from ems_access.tokens import generate_token

logger = logging.getLogger("benchmarks.ingest_bench")

RESULTS = REPO_ROOT / "benchmarks" / "results"
#: The benchmark broker's per-session queue (production default: 100,000).
BENCH_MAX_QUEUED = 200_000
DEFAULT_JSON = RESULTS / "ingest_bench.json"
#: Device-id prefix of each phase's fleet (every phase has its own devices).
PHASE_PREFIXES = {"naive": "naive", "real": "real", "naive_after": "naive2"}
BROKERS = ("mosquitto", "amqtt")
# Device timestamps start this far in the past, one second per sample, so no run gets
# near "now" (future_timestamp) however many samples a device sends.
HISTORY_S = 6 * 3600


def _kinds(text: str) -> list[str]:
    kinds = [part.strip() for part in text.split(",") if part.strip()]
    if not kinds or any(k not in BROKERS for k in kinds):
        raise argparse.ArgumentTypeError(f"brokers are a comma list of {', '.join(BROKERS)}")
    return kinds


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ingest_bench",
        description=(
            "Drive simulated 3-phase devices (QoS 1, raw-socket publishers in several "
            "processes) through a real broker into a throwaway durable TimescaleDB; print the "
            "sustained msg/s and rows/s of the platform's ingest (python -m ems_platform, ack "
            "after commit; --workers N of them in a $share group) and of a naive pipeline "
            "(auto-ack, one INSERT per row), the count check and a py-spy profile of the "
            "ingest. EMS_INGEST_* variables in the environment reach the platform; EMS_MQTT_* "
            "ones reach the broker."
        ),
    )
    parser.add_argument(
        "--brokers",
        type=_kinds,
        default=["mosquitto"],
        help="comma list of mosquitto (EMS plugin), amqtt (default mosquitto)",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="platform ingest processes sharing the load through the MQTT shared subscription "
        "$share/bench/... (EMS_INGEST_SHARED_GROUP), each with its own client id and API "
        "port; more than 1 needs Mosquitto (default 1: one process, no shared group)",
    )
    parser.add_argument("--publishers", type=int, default=2, help="load processes")
    parser.add_argument("--devices", type=int, default=500, help="devices per load process")
    parser.add_argument("--inflight", type=int, default=1000, help="QoS 1 window per publisher")
    parser.add_argument(
        "--backlog",
        type=int,
        default=80_000,
        help="messages published ahead of the database: more than the ingest holds (three "
        "batches of EMS_INGEST_BATCH_ROWS / 3 messages) and less than the broker's queue limit "
        f"(EMS_MQTT_MAX_QUEUED, {BENCH_MAX_QUEUED:,} for the benchmark's broker unless set)",
    )
    parser.add_argument("--warmup", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument(
        "--window",
        type=float,
        default=180.0,
        help="seconds the real pipeline is measured. Its first 30-45 s run faster than the "
        "rest, while PostgreSQL's shared buffers still take the new pages without writing "
        "older ones out; the default is long enough for the steady state to dominate (the "
        "table's 15 s slices show the drift). Commits of 1-2 s each land in the count whole, "
        "so a short window is off by up to one commit",
    )
    parser.add_argument(
        "--naive-window",
        type=float,
        default=20.0,
        help="seconds each naive window is measured (it commits every row, so it is steady "
        "from the start)",
    )
    parser.add_argument("--naive-backlog", type=int, default=2_000)
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument(
        "--profile",
        type=float,
        default=15.0,
        help="seconds of py-spy on the ingest (every worker) after the window (0: none)",
    )
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs for debugging")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def _postmaster_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def _broker_run(
    kind: str, args: argparse.Namespace, workdir: Path, dsn: str, ctx: dict[str, Any]
) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind}
    progress = await Progress.connect(dsn)
    try:
        async with running_broker(kind, workdir / kind, dsn, ctx["credentials"]) as broker:
            phases: list[tuple[str, Any, FleetConfig, PhaseConfig]] = []
            real = (
                "real",
                running_platform(broker, dsn, ctx["service_token"], workdir / kind, args.workers),
                ctx["fleet"],
                PhaseConfig(
                    "real",
                    args.warmup,
                    args.window,
                    args.drain_timeout,
                    args.profile,
                    RESULTS / f"ingest_profile_{kind}.txt",
                ),
            )
            if args.skip_naive:
                phases.append(real)
            else:
                # The naive rate is the ratio's denominator and the figure most easily
                # disturbed by anything else on the box: measured before and after the real
                # pipeline, the faster of the two counts.
                naive_fleet = replace(ctx["fleet"], backlog=args.naive_backlog)
                naive_phase = PhaseConfig("naive", min(args.warmup, 5.0), args.naive_window, 30.0)
                naive_token = ctx["naive_token"]
                phases.append(
                    (
                        "naive",
                        running_naive(broker, dsn, naive_token, workdir / kind),
                        naive_fleet,
                        naive_phase,
                    )
                )
                phases.append(real)
                phases.append(
                    (
                        "naive_after",
                        running_naive(broker, dsn, naive_token, workdir / kind, "naive-after.log"),
                        naive_fleet,
                        naive_phase,
                    )
                )
            for name, pipeline, fleet_config, phase in phases:
                if name == "naive_after":
                    logger.info("vacuuming what the real phase wrote before the naive one again")
                    await progress.vacuum()
                out[name] = await measure_phase(
                    phase,
                    pipeline,
                    broker,
                    progress,
                    fleet_config,
                    ctx["load_tokens"],
                    f"{PHASE_PREFIXES[name]}-{kind}",
                    _postmaster_pid(workdir / "pg"),
                )
    except (BrokerStartError, PipelineError, FleetError) as exc:
        logger.error("%s: %s", kind, exc)
        out["error"] = str(exc)
    finally:
        await progress.close()
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = _workdir()
    started = time.monotonic()
    fleet = FleetConfig(
        args.publishers, args.devices, args.inflight, args.backlog, time.time() - HISTORY_S
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        async with throwaway_database(workdir / "pg", durable=True) as dsn:
            ids = [
                d
                for kind in args.brokers
                for name in PHASE_PREFIXES.values()
                for d in fleet_device_ids(f"{name}-{kind}", fleet)
            ]
            await register_devices(dsn, ids)
            ctx = {
                "fleet": fleet,
                # Tokens exist before any broker starts, so no broker has to learn them live.
                "credentials": await create_credentials(dsn, devices=0, warmup=0),
                "load_tokens": await make_publisher_tokens(dsn, args.publishers),
                "naive_token": await make_service_token(dsn, "ingest bench naive"),
                "service_token": generate_token(),
            }
            for kind in args.brokers:
                results[kind] = await _broker_run(kind, args, workdir, dsn, ctx)
                ratio = naive_ratio(results[kind])
                if ratio is not None:
                    results[kind]["real_over_faster_naive"] = ratio
    finally:
        if args.keep_workdir:
            logger.info("logs kept in %s", workdir)
        else:
            _remove(workdir)
    return {
        **report.run_header("ingest", started),
        "database": "LocalCluster durable=True (fsync on, synchronous_commit on)",
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "log_level")}
        | {
            "ems_env": {
                k: v
                for k, v in os.environ.items()
                if k.startswith(("EMS_INGEST_", "EMS_MQTT_", "EMS_DB_"))
            }
        },
        "results": results,
    }


def _failures(results: dict[str, dict[str, Any]]) -> list[str]:
    failed = []
    for kind, result in results.items():
        if "error" in result:
            failed.append(f"{kind}: {result['error'].splitlines()[0]}")
        check = result.get("real", {}).get("count_check")
        if check is not None and not check["ok"]:
            failed.append(f"{kind}: count check failed: {check}")
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    # A saturating backlog plus what the ingest holds unacked must fit in the broker's queue
    # for the ingest's session (past it Mosquitto drops messages it already acked).
    os.environ.setdefault("EMS_MQTT_MAX_QUEUED", str(BENCH_MAX_QUEUED))
    if args.workers > 1 and "amqtt" in args.brokers:
        # amqtt would take "$share/bench/..." as a plain filter matching nothing.
        parser.error(
            "--workers > 1 splits the load through an MQTT shared subscription ($share), "
            "which amqtt does not have; use --brokers mosquitto"
        )
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    outcome = asyncio.run(run(args))
    print()
    print(table(outcome["results"]))
    machine = outcome["machine"]
    print(
        f"\n({outcome['seconds']} s on Python {machine['python']} "
        f"({machine['python_executable']}); figures in {args.json})"
    )
    report.write_json(args.json, outcome)
    failed = _failures(outcome["results"])
    for line in failed:
        print(f"FAILED: {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
