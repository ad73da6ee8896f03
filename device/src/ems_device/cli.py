"""``ems-device`` / ``python -m ems_device``: run the agent from ``EMS_*`` settings.

argparse keeps a Pi's install small; every option overrides the matching variable.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from ems_device import __version__

_ENV_HELP = """\
configuration (environment; options below override):
  EMS_DEVICE_ID              device id (required); MQTT client id and username
  EMS_DEVICE_TOKEN           device token, the MQTT password
  EMS_MQTT_HOST / _PORT      broker address (127.0.0.1 / 1883)
  EMS_MQTT_TLS, EMS_MQTT_CA_FILE
  EMS_DEVICE_METER           simulated | ade9000 (simulated)
  EMS_DEVICE_INTERVAL        seconds between samples (1.0)
  EMS_DEVICE_PHASES          1..3 (3)
  EMS_DEVICE_DB              SQLite file (default EMS_DATA_DIR/<id>.db or
                             ~/.local/share/ems-device/<id>.db)
  EMS_DEVICE_RETENTION_DAYS  drop unsent samples older than this (3)
  EMS_DEVICE_SPI_BUS/_DEVICE/_SPEED_HZ, EMS_DEVICE_LINE_HZ, EMS_DEVICE_VOLTAGE_GAIN,
  EMS_DEVICE_CURRENT_GAIN, EMS_DEVICE_VOLTAGE_DIVIDER, EMS_DEVICE_CT_RATIO,
  EMS_DEVICE_BURDEN_OHMS     ADE9000 wiring and scaling
  EMS_DEVICE_RELAY           memory | sysfs; EMS_DEVICE_RELAY_PINS (A:17,B:27,C:22)
See device/README.md for the full table.
"""

_OVERRIDES = {
    "device_id": "EMS_DEVICE_ID",
    "mqtt_host": "EMS_MQTT_HOST",
    "mqtt_port": "EMS_MQTT_PORT",
    "meter": "EMS_DEVICE_METER",
    "interval": "EMS_DEVICE_INTERVAL",
    "db": "EMS_DEVICE_DB",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ems-device",
        description="EMS device agent: meter -> SQLite outbox -> MQTT, relay commands.",
        epilog=_ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ems-device {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")
    run = commands.add_parser(
        "run",
        help="run the agent until SIGINT/SIGTERM",
        description="Run the agent until SIGINT/SIGTERM, then publish offline and disconnect.",
        epilog=_ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--device-id", help="overrides EMS_DEVICE_ID")
    run.add_argument("--mqtt-host", help="overrides EMS_MQTT_HOST")
    run.add_argument("--mqtt-port", type=int, help="overrides EMS_MQTT_PORT")
    run.add_argument("--meter", choices=["simulated", "ade9000"], help="overrides EMS_DEVICE_METER")
    run.add_argument("--interval", type=float, help="overrides EMS_DEVICE_INTERVAL (seconds)")
    run.add_argument("--db", help="overrides EMS_DEVICE_DB (SQLite path)")
    run.add_argument(
        "--log-level", default=os.environ.get("EMS_LOG_LEVEL", "INFO"), help="default: INFO"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=str(args.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for option, variable in _OVERRIDES.items():
        value = getattr(args, option)
        if value is not None:
            os.environ[variable] = str(value)

    from ems_device.agent import run_agent
    from ems_device.settings import DeviceSettings

    try:
        settings = DeviceSettings()
    except ValidationError as exc:
        sys.stderr.write(f"ems-device: invalid configuration:\n{exc}\n")
        return 2
    run_agent(settings)
    return 0
