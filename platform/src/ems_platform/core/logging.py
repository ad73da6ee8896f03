"""Handlers are configured here, at the entry point only; modules just get their logger."""

from __future__ import annotations

import logging


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # paho logs every packet at DEBUG through aiomqtt's logger; keep it quiet unless asked.
    if level.upper() != "DEBUG":
        logging.getLogger("mqtt").setLevel(logging.WARNING)
