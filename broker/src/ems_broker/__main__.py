"""``python -m ems_broker``: the EMS MQTT broker (embedded amqtt with token auth and ACLs)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from pydantic import ValidationError

from ems_broker.app import serve
from ems_broker.settings import BrokerSettings

_EPILOG = """\
configuration comes from the environment:
  EMS_DATABASE_URL           PostgreSQL URL of the EMS database (required; never on the
                             command line, where other users could read it)
  EMS_MQTT_HOST              listen address (default 127.0.0.1)
  EMS_MQTT_PORT              listen port (default 1883; 0 picks a free port)
  EMS_MQTT_MAX_PACKET        largest accepted MQTT packet in bytes (default 1048576)
  EMS_MQTT_CONNECT_TIMEOUT   seconds allowed between TCP connect and CONNECT (default 10)
  EMS_MQTT_MAX_QUEUED        messages kept per offline persistent session (default 1000)
  EMS_MQTT_SESSION_EXPIRY    seconds an offline persistent session is kept (default 86400)
  EMS_ACCESS_CACHE_TTL       seconds a token lookup is trusted without NOTIFY (default 60)
  EMS_DB_POOL_SIZE           database connections (default 4)
  EMS_AUTH_FAIL_LIMIT        failed logins per client address per window before that
                             address is refused outright (default 10; 0 disables)
  EMS_AUTH_FAIL_WINDOW       seconds the failed logins are counted over (default 60)
options given here override the environment.

clients authenticate with an EMS token as MQTT password; device tokens also need their
device id as client id and username.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ems_broker",
        description="EMS MQTT broker: amqtt with token authentication and per-token topic ACLs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="listen address (EMS_MQTT_HOST)")
    parser.add_argument("--port", type=int, help="listen port (EMS_MQTT_PORT)")
    parser.add_argument("--max-packet", type=int, help="largest packet (EMS_MQTT_MAX_PACKET)")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


async def _run(settings: BrokerSettings) -> None:
    task = asyncio.create_task(serve(settings), name="ems-broker")
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        logging.getLogger("ems_broker").info("broker stopped")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.log_level != "DEBUG":
        # amqtt logs every connection and state change at INFO; our own lines say what matters.
        for noisy in ("amqtt", "transitions"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
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
        settings = BrokerSettings(**overrides)
    except ValidationError as exc:
        logging.getLogger("ems_broker").error("invalid configuration: %s", exc)
        return 2
    asyncio.run(_run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
