"""``python -m ems_dashboard_ws``: run the adapter from ``EMS_*`` environment variables."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from pydantic import ValidationError

from ems_dashboard_ws import redact
from ems_dashboard_ws.server import StartupFailed, serve
from ems_dashboard_ws.settings import DashboardSettings

_ENVIRONMENT = """\
environment (EMS_ prefix):
  EMS_DATABASE_URL        PostgreSQL DSN of the token store (required)
  EMS_SERVICE_TOKEN       token the adapter presents to the broker (required)
  EMS_MQTT_HOST           broker host (127.0.0.1)
  EMS_MQTT_PORT           broker port (1883)
  EMS_MQTT_USERNAME       broker username (ems-dashboard)
  EMS_WS_HOST             address to serve on (127.0.0.1)
  EMS_WS_PORT             port to serve on (8001)
  EMS_WS_QUEUE_SIZE       messages buffered per browser before the oldest is dropped (256)
  EMS_WS_PING_INTERVAL    seconds between WebSocket pings (20); a client missing
  EMS_WS_PING_MISSES      this many in a row (3) is dropped
  EMS_AUTH_CACHE_TTL      seconds a token lookup is trusted (5)
  EMS_AUTH_REFRESH_INTERVAL  seconds between re-checks of live sessions (5)
"""


def build_parser() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog="python -m ems_dashboard_ws",
        description=(
            "EMS dashboard WebSocket adapter: mirrors broker topics to browsers under each "
            "token's ACL and serves the live dashboard page at /."
        ),
        epilog=_ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default INFO)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    redact.install()
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact.RedactTokens())
    try:
        settings = DashboardSettings()
    except ValidationError as exc:
        missing = ", ".join(
            "EMS_" + str(item["loc"][0]).upper() for item in exc.errors(include_url=False)
        )
        parser.error(f"invalid or missing settings: {missing}")
    # uvicorn shuts down gracefully on SIGTERM and then re-raises it for the previous
    # handler; by then all is closed, so the process should exit 0, not die of the signal.
    signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        return 0
    except StartupFailed as exc:
        logging.getLogger("ems_dashboard_ws").error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
