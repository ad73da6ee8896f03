"""What the lifespan builds and every request reads: one object on ``app.state``."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from ems_access.cache import AccessCache
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
