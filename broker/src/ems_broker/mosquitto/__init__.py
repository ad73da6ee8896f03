"""Mosquitto as an EMS broker: a C auth plugin plus a Python supervisor that feeds it.

``running_mosquitto(settings)`` serves inside an ``async with`` block; ``serve(settings)``
runs until cancelled; ``python -m ems_broker.mosquitto`` (``ems broker --mosquitto``) runs
from EMS_* variables. See broker/README.md, section "Mosquitto".
"""

from ems_broker.mosquitto.plugin_build import PluginBuildError, build_plugin
from ems_broker.mosquitto.settings import MosquittoSettings
from ems_broker.mosquitto.snapshot import render_snapshot, write_snapshot
from ems_broker.mosquitto.supervisor import (
    MosquittoError,
    RunningMosquitto,
    running_mosquitto,
    serve,
)

__all__ = [
    "MosquittoError",
    "MosquittoSettings",
    "PluginBuildError",
    "RunningMosquitto",
    "build_plugin",
    "render_snapshot",
    "running_mosquitto",
    "serve",
    "write_snapshot",
]
