"""Broker benchmark: QoS 1 relay rate and memory per idle device session, per broker.

``uv run python -m benchmarks.broker_bench`` (or ``benchmarks/run_broker_bench.sh``)
starts a throwaway PostgreSQL+TimescaleDB, creates one device token per session, then for
each broker in turn starts it, measures, and stops it; prints one table for all brokers
(with the Mosquitto/amqtt ratios) and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.bench_db import create_credentials, throwaway_database
from benchmarks.brokers import (
    KINDS,
    BrokerStartError,
    mosquitto_plugin_available,
    running_broker,
)
from benchmarks.relay import REPO_ROOT, RelayConfig, RelayError, measure_relay
from benchmarks.sessions import measure_sessions

logger = logging.getLogger("benchmarks.broker_bench")

DEFAULT_JSON = REPO_ROOT / "benchmarks" / "results" / "broker_bench.json"
# File descriptors beyond the sessions: the database pool, workers, logs.
_SPARE_FDS = 1024


def _levels(text: str) -> list[int]:
    levels = sorted({int(part) for part in text.split(",") if part.strip()})
    if not levels or levels[0] <= 0:
        raise argparse.ArgumentTypeError("give positive session counts, e.g. 1000,10000")
    return levels


def _kinds(text: str) -> list[str]:
    kinds = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"brokers are a comma list of {', '.join(KINDS)}")
    return kinds


def _default_kinds() -> str:
    return "amqtt,mosquitto" if mosquitto_plugin_available() else "amqtt,mosquitto-plain"


def _parser() -> argparse.ArgumentParser:
    default_kinds = _default_kinds()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.broker_bench",
        description=(
            "Measure each MQTT broker's QoS 1 relay rate (1 publisher -> 1 subscriber, "
            "separate processes, rate at the subscriber) and its memory per idle, "
            "authenticated device session. Everything runs on 127.0.0.1 against a "
            "throwaway database and is stopped and removed afterwards."
        ),
        epilog=(
            "brokers: amqtt = the built-in broker (python -m ems_broker); mosquitto = "
            "Mosquitto with the EMS plugin (ems broker --mosquitto); mosquitto-plain = "
            "stock Mosquitto with a password file and ACL patterns (no device binding, "
            "no live revocation), for comparison or before the plugin exists."
        ),
    )
    parser.add_argument(
        "--brokers",
        type=_kinds,
        default=_kinds(default_kinds),
        help=f"comma list of {', '.join(KINDS)} (default here: {default_kinds})",
    )
    parser.add_argument("--messages", type=int, default=20_000, help="relay messages")
    parser.add_argument("--payload", type=int, default=600, help="relay payload bytes")
    parser.add_argument("--inflight", type=int, default=20, help="publisher's QoS 1 window")
    parser.add_argument(
        "--relay-time-cap", type=float, default=60.0, help="seconds the relay may take"
    )
    parser.add_argument(
        "--sessions",
        type=_levels,
        default=_levels("1000,10000"),
        help="idle session counts, measured cumulatively on one broker (default 1000,10000)",
    )
    parser.add_argument(
        "--warmup", type=int, default=100, help="sessions opened and closed before baseline"
    )
    parser.add_argument("--concurrency", type=int, default=100, help="connects in flight at once")
    parser.add_argument(
        "--subscribe",
        action="store_true",
        help="idle sessions also subscribe to ems/<id>/cmd, as the device agent does "
        "(slow on amqtt 0.12.1: every CONNECT walks all subscriptions; see README)",
    )
    parser.add_argument("--skip-relay", action="store_true")
    parser.add_argument("--skip-sessions", action="store_true")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"result file (default {DEFAULT_JSON})"
    )
    parser.add_argument("--keep-workdir", action="store_true", help="keep logs for debugging")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def raise_fd_limit(needed: int) -> int:
    """Lift RLIMIT_NOFILE for us and the brokers we start (they inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed and os.geteuid() == 0:
        hard = needed  # root may raise the hard limit up to fs.nr_open
    target = hard if hard == resource.RLIM_INFINITY else max(soft, min(hard, needed))
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _workdir() -> Path:
    # PostgreSQL runs as `postgres` when we are root: it must be able to traverse the
    # parent of its data directory, hence 0711 rather than mkdtemp's 0700.
    workdir = Path(tempfile.mkdtemp(prefix="ems-broker-bench-", dir="/tmp"))
    workdir.chmod(0o711)
    return workdir


async def _bench_one(
    kind: str, args: argparse.Namespace, workdir: Path, dsn: str, credentials: Any
) -> dict[str, Any]:
    result: dict[str, Any] = {"kind": kind}
    if not args.skip_relay:
        config = RelayConfig(args.messages, args.payload, args.inflight, args.relay_time_cap)
        # A fresh broker per measurement: neither inherits the other's heap or sessions.
        async with running_broker(kind, workdir / f"{kind}-relay", dsn, credentials) as broker:
            logger.info("%s: relaying %d QoS 1 messages", kind, args.messages)
            result["relay"] = await measure_relay(broker, credentials, config)
    if not args.skip_sessions:
        async with running_broker(kind, workdir / f"{kind}-idle", dsn, credentials) as broker:
            logger.info("%s: opening up to %d idle sessions", kind, max(args.sessions))
            result["sessions"] = await measure_sessions(
                broker,
                credentials,
                args.sessions,
                concurrency=args.concurrency,
                subscribe=args.subscribe,
            )
    return result


def _remove(workdir: Path) -> None:
    # A second pass catches files a just-stopped server wrote while the first one ran.
    for _ in range(2):
        shutil.rmtree(workdir, ignore_errors=True)
    if workdir.exists():
        logger.warning("could not remove %s entirely", workdir)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = _workdir()
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    try:
        async with throwaway_database(workdir / "pg") as dsn:
            devices = 0 if args.skip_sessions else max(args.sessions)
            logger.info("creating %d device tokens", devices + args.warmup + 1)
            credentials = await create_credentials(dsn, devices=devices, warmup=args.warmup)
            for kind in args.brokers:
                try:
                    results[kind] = await _bench_one(kind, args, workdir, dsn, credentials)
                except (BrokerStartError, RelayError) as exc:
                    logger.error("%s: %s", kind, exc)
                    results[kind] = {"kind": kind, "error": str(exc)}
    finally:
        if args.keep_workdir:
            logger.info("logs kept in %s", workdir)
        else:
            _remove(workdir)
    return {
        **report.run_header("broker", started),
        "settings": {
            "brokers": args.brokers,
            "messages": args.messages,
            "payload_bytes": args.payload,
            "inflight": args.inflight,
            "sessions": args.sessions,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "subscribe": args.subscribe,
        },
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    needed = max(args.sessions) + args.warmup + _SPARE_FDS
    limit = raise_fd_limit(needed)
    if not args.skip_sessions and limit < needed:
        logger.error(
            "RLIMIT_NOFILE is %d, %d sessions need about %d", limit, max(args.sessions), needed
        )
        return 2
    outcome = asyncio.run(run(args))
    print()
    print(report.table(outcome["results"], args.sessions))
    print(f"\n({outcome['seconds']} s; figures in {args.json})")
    report.write_json(args.json, outcome)
    failed = [k for k, r in outcome["results"].items() if "error" in r]
    results = outcome["results"]
    lossy = {k: r["relay"]["lost"] for k, r in results.items() if r.get("relay", {}).get("lost")}
    for kind, lost in lossy.items():
        got = args.messages - lost
        print(f"LOSS: {kind} delivered {got:,} of {args.messages:,} QoS 1 messages")
    for kind in failed:
        print(f"FAILED: {kind}: {outcome['results'][kind]['error'].splitlines()[0]}")
    # QoS 1 promises every message: a loss fails the run like a broker that did not start.
    return 1 if failed or lossy else 0


if __name__ == "__main__":
    sys.exit(main())
