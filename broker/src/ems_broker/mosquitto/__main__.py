"""``python -m ems_broker.mosquitto`` (``ems broker --mosquitto``): Mosquitto with EMS tokens."""

from __future__ import annotations

import asyncio
import logging
import sys

from ems_broker.cli import (
    broker_parser,
    configure_logging,
    load_settings,
    serve_until_signalled,
)
from ems_broker.mosquitto.plugin_build import PluginBuildError
from ems_broker.mosquitto.settings import MosquittoSettings
from ems_broker.mosquitto.supervisor import MosquittoError, serve

_EPILOG = """\
configuration comes from the environment:
  EMS_DATABASE_URL              PostgreSQL URL of the EMS database (required; never on the
                                command line, where other users could read it)
  EMS_MQTT_HOST                 listen address (default 127.0.0.1)
  EMS_MQTT_PORT                 listen port (default 1883; 0 picks a free port)
  EMS_MQTT_MAX_PACKET           largest accepted MQTT packet in bytes (default 1048576)
  EMS_MQTT_MAX_KEEPALIVE        largest keepalive a client may ask for (default 65535)
  EMS_MQTT_MAX_QUEUED           QoS 1 messages queued per client (default 100000)
  EMS_MQTT_MAX_INFLIGHT         unacknowledged QoS 1 messages per client (default 50000)
  EMS_DATA_DIR                  EMS state (default /var/lib/ems as root, else
                                ~/.local/share/ems)
  EMS_MOSQUITTO_DIR             config, access snapshot, persistence (default
                                EMS_DATA_DIR/mosquitto)
  EMS_MOSQUITTO_BIN             mosquitto executable (default /usr/sbin/mosquitto)
  EMS_MOSQUITTO_PLUGIN_CACHE    compiled plugin cache (default ~/.cache/ems/mosquitto-plugin)
  EMS_ACCESS_REFRESH            seconds between full snapshot re-exports (default 30)
  EMS_AUTH_FAIL_LIMIT           failed logins per address per window (default 10; 0: off)
  EMS_AUTH_FAIL_WINDOW          that window in seconds (default 60)
options given here override the environment.

clients authenticate with an EMS token as MQTT password; device tokens also need their
device id as client id and username. Token changes apply live (NOTIFY ems_access).
"""


async def _run(settings: MosquittoSettings) -> int:
    log = logging.getLogger("ems_broker.mosquitto")
    try:
        await serve_until_signalled(serve(settings), "ems-mosquitto", "ems_broker.mosquitto")
    except (MosquittoError, PluginBuildError, ExceptionGroup) as exc:
        failures = _leaves(exc)
        if not all(isinstance(e, MosquittoError | PluginBuildError) for e in failures):
            raise
        for failure in failures:
            log.error("%s", failure)
        return 1
    return 0


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def main(argv: list[str] | None = None) -> int:
    args = broker_parser(
        "ems broker --mosquitto",
        "Mosquitto with the EMS auth plugin: EMS tokens and per-token topic ACLs.",
        _EPILOG,
    ).parse_args(argv)
    configure_logging(args.log_level)
    settings = load_settings(MosquittoSettings, args, "ems_broker.mosquitto")
    if settings is None:
        return 2
    return asyncio.run(_run(settings))


if __name__ == "__main__":
    sys.exit(main())
