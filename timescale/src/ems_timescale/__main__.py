"""`python -m ems_timescale`: migrate a database, report its edition, or run a local cluster."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

import asyncpg

from ems_timescale.cluster import LocalCluster
from ems_timescale.errors import TimescaleError
from ems_timescale.migrate import edition, migrate
from ems_timescale.settings import TimescaleSettings

logger = logging.getLogger("ems_timescale")


def build_parser(settings: TimescaleSettings) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ems_timescale",
        description="EMS database tools. Settings come from EMS_* environment variables.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    url_help = "PostgreSQL URL (default: EMS_DATABASE_URL)"

    run = commands.add_parser("migrate", help="apply pending schema migrations")
    run.add_argument("--database-url", default=settings.database_url, help=url_help)

    show = commands.add_parser("edition", help="print the TimescaleDB edition: apache|timescale")
    show.add_argument("--database-url", default=settings.database_url, help=url_help)

    serve = commands.add_parser(
        "cluster", help="run an embedded PostgreSQL+TimescaleDB cluster until interrupted"
    )
    serve.add_argument("--data-dir", type=Path, required=True, help="created on first start")
    serve.add_argument(
        "--port", type=int, default=5432, help="TCP port on 127.0.0.1 (0: any free port)"
    )
    serve.add_argument(
        "--throwaway", action="store_true", help="no fsync: fast, but a crash loses data"
    )
    return parser


async def _migrate(url: str) -> None:
    applied = await migrate(url)
    logger.info("%d migration(s) applied", len(applied))


async def _edition(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        sys.stdout.write(f"{await edition(conn)}\n")
    finally:
        await conn.close()


async def _cluster(data_dir: Path, port: int, durable: bool) -> None:
    async with LocalCluster(data_dir, port or None, durable=durable) as cluster:
        await migrate(cluster.dsn())
        logger.info("serving %s; interrupt to stop", cluster.dsn())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    settings = TimescaleSettings()
    parser = build_parser(settings)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command in ("migrate", "edition") and not args.database_url:
        parser.error("set EMS_DATABASE_URL or pass --database-url")
    try:
        if args.command == "migrate":
            asyncio.run(_migrate(args.database_url))
        elif args.command == "edition":
            asyncio.run(_edition(args.database_url))
        else:
            asyncio.run(_cluster(args.data_dir, args.port, not args.throwaway))
    except (TimescaleError, OSError, asyncpg.PostgresError) as exc:
        logger.error("%s", exc)  # the message says it all; a traceback would bury it
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
