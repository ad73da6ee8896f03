"""What the lifespan builds and every request reads: one object on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from ems_access.cache import AccessCache
from ems_access.ratelimit import FailureLimiter
from ems_platform.api.hooks.sessions import HookSessions
from ems_platform.core.db import Pool
from ems_platform.core.settings import PlatformSettings
from ems_platform.ingest.service import Ingest


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: PlatformSettings
    pool: Pool
    access: AccessCache
    registry: CollectorRegistry
    ingest: Ingest | None
    #: Failed authentications per client address, shared by the REST API and the hooks.
    limiter: FailureLimiter = field(default_factory=FailureLimiter)
    hook_sessions: HookSessions = field(default_factory=HookSessions)
