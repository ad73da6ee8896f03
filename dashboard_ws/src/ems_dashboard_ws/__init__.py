"""EMS dashboard WebSocket adapter: MQTT topics mirrored to browsers under the same ACLs.

Entry points: ``create_app(settings)`` (the ASGI app), ``serve(settings)`` (run until
cancelled) and ``serving(settings)`` (run in the background, for tests and tools).
"""

from ems_dashboard_ws.app import create_app
from ems_dashboard_ws.server import RunningServer, StartupFailed, serve, serving
from ems_dashboard_ws.settings import DashboardSettings

__all__ = [
    "DashboardSettings",
    "RunningServer",
    "StartupFailed",
    "create_app",
    "serve",
    "serving",
]
