"""``python -m ems_platform``: the REST API and the MQTT ingest, configured by EMS_* variables."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from pydantic import ValidationError

from ems_platform.core.errors import PlatformError
from ems_platform.core.gc_tuning import tune_for_throughput
from ems_platform.core.logging import configure_logging
from ems_platform.core.settings import PlatformSettings
from ems_platform.serve import serve

log = logging.getLogger("ems_platform")

_EPILOG = """\
environment (EMS_ prefix):
  EMS_DATABASE_URL        PostgreSQL DSN of the migrated database (required; `ems migrate`)
  EMS_MQTT_HOST, EMS_MQTT_PORT      broker to ingest from (127.0.0.1:1883)
  EMS_SERVICE_TOKEN       MQTT password of the ingest (user ems-platform); installed as a
                          'service' token
  EMS_ADMIN_TOKEN         installed as an 'admin' token when set
  EMS_API_HOST, EMS_API_PORT        where the REST API listens (127.0.0.1:8000)
  EMS_INGEST_ENABLED      run the MQTT ingest in this process (true)
  EMS_INGEST_CLIENT_ID    MQTT client id (ems-platform-ingest)
  EMS_INGEST_BATCH_ROWS   commit a batch at this many rows (50000)
  EMS_INGEST_FLUSH_MS     ... or this long after its first message (200)
  EMS_INGEST_WRITE_LANES  commit a batch as this many transactions at once, no device in
                          two (2)
  EMS_INGEST_QUEUE_SIZE   messages held before MQTT reads pause (1000)
  EMS_INGEST_SHARED_GROUP share the load with other workers via $share/<group>/ (Mosquitto);
                          give each worker its own EMS_INGEST_CLIENT_ID and EMS_API_PORT
  EMS_LOG_LEVEL           INFO
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ems_platform",
        description="EMS platform: REST API under /api/v1 plus the MQTT ingest into TimescaleDB.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", help="override EMS_API_HOST")
    parser.add_argument("--port", type=int, help="override EMS_API_PORT")
    parser.add_argument(
        "--no-ingest", action="store_true", help="serve the API only (EMS_INGEST_ENABLED=false)"
    )
    parser.add_argument("--log-level", help="override EMS_LOG_LEVEL")
    args = parser.parse_args(argv)

    overrides: dict[str, object] = {}
    if args.host:
        overrides["api_host"] = args.host
    if args.port is not None:
        overrides["api_port"] = args.port
    if args.no_ingest:
        overrides["ingest_enabled"] = False
    if args.log_level:
        overrides["log_level"] = args.log_level
    try:
        settings = PlatformSettings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        configure_logging("INFO")
        # Never the input values: they may be tokens.
        problems = "; ".join(
            f"EMS_{'.'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors(include_input=False, include_url=False)
        )
        log.error("invalid settings: %s", problems)
        return 2
    configure_logging(settings.log_level)
    if settings.ingest_enabled:
        tune_for_throughput()
    try:
        asyncio.run(serve(settings))
    except PlatformError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
