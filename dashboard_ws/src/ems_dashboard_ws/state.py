"""What the lifespan hands to every request: the hub, the authenticator and the broker link."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from starlette.requests import HTTPConnection

from ems_access.ratelimit import FailureLimiter
from ems_dashboard_ws.hub import Hub
from ems_dashboard_ws.mqtt_link import MqttLink
from ems_dashboard_ws.policy import Authenticator
from ems_dashboard_ws.settings import DashboardSettings


@dataclass(frozen=True, slots=True)
class DashboardState:
    settings: DashboardSettings
    hub: Hub
    authenticator: Authenticator
    link: MqttLink
    limiter: FailureLimiter = field(default_factory=FailureLimiter)


STATE_KEY = "dashboard"


def get_state(connection: HTTPConnection) -> DashboardState:
    return cast(DashboardState, getattr(connection.state, STATE_KEY))
