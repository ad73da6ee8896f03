"""Command-line parts shared by ``python -m ems_broker`` and ``ems broker --mosquitto``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

from pydantic import ValidationError

from ems_broker.settings import BaseBrokerSettings

S = TypeVar("S", bound=BaseBrokerSettings)


def broker_parser(prog: str, description: str, epilog: str) -> argparse.ArgumentParser:
    """The options both broker command lines take (they override the environment)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="listen address (EMS_MQTT_HOST)")
    parser.add_argument("--port", type=int, help="listen port (EMS_MQTT_PORT)")
    parser.add_argument("--max-packet", type=int, help="largest packet (EMS_MQTT_MAX_PACKET)")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def load_settings(settings_cls: type[S], args: argparse.Namespace, logger: str) -> S | None:
    """``settings_cls`` from the environment and ``args``; ``None`` (error logged) if invalid."""
    overrides = {
        name: value
        for name, value in (
            ("mqtt_host", args.host),
            ("mqtt_port", args.port),
            ("mqtt_max_packet", args.max_packet),
        )
        if value is not None
    }
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        logging.getLogger(logger).error("invalid configuration: %s", exc)
        return None


async def serve_until_signalled(serving: Coroutine[Any, Any, None], name: str, logger: str) -> None:
    """Await ``serving`` as task ``name``; SIGINT or SIGTERM cancels it ("broker stopped")."""
    task = asyncio.create_task(serving, name=name)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        logging.getLogger(logger).info("broker stopped")
