"""``python -m ems_broker``: the EMS MQTT broker (embedded amqtt with token auth and ACLs)."""

from __future__ import annotations

import asyncio
import logging
import sys

from ems_broker.app import serve
from ems_broker.cli import (
    broker_parser,
    configure_logging,
    load_settings,
    serve_until_signalled,
)
from ems_broker.settings import BrokerSettings

_EPILOG = """\
configuration comes from the environment:
  EMS_DATABASE_URL           PostgreSQL URL of the EMS database (required; never on the
                             command line, where other users could read it)
  EMS_MQTT_HOST              listen address (default 127.0.0.1)
  EMS_MQTT_PORT              listen port (default 1883; 0 picks a free port)
  EMS_MQTT_MAX_PACKET        largest accepted MQTT packet in bytes (default 1048576)
  EMS_MQTT_CONNECT_TIMEOUT   seconds allowed between TCP connect and CONNECT (default 10)
  EMS_MQTT_MAX_QUEUED        QoS 1 messages queued per session (default 100000)
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


def main(argv: list[str] | None = None) -> int:
    args = broker_parser(
        "python -m ems_broker",
        "EMS MQTT broker: amqtt with token authentication and per-token topic ACLs.",
        _EPILOG,
    ).parse_args(argv)
    configure_logging(args.log_level)
    if args.log_level != "DEBUG":
        # amqtt logs every connection and state change at INFO; our own lines say what matters.
        for noisy in ("amqtt", "transitions"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    settings = load_settings(BrokerSettings, args, "ems_broker")
    if settings is None:
        return 2
    asyncio.run(serve_until_signalled(serve(settings), "ems-broker", "ems_broker"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
