"""Tokens named in the environment, installed at startup so one secret works everywhere."""

from __future__ import annotations

import logging

from ems_access.store import ensure_token
from ems_platform.core.db import Pool
from ems_platform.core.settings import PlatformSettings

log = logging.getLogger(__name__)


async def install_configured_tokens(pool: Pool, settings: PlatformSettings) -> None:
    """EMS_ADMIN_TOKEN as an admin, EMS_SERVICE_TOKEN as a service principal (if set)."""
    if settings.admin_token is not None:
        await ensure_token(
            pool, settings.admin_token.get_secret_value(), role="admin", label="EMS_ADMIN_TOKEN"
        )
        log.info("admin token from EMS_ADMIN_TOKEN is installed")
    if settings.service_token is not None:
        await ensure_token(
            pool,
            settings.service_token.get_secret_value(),
            role="service",
            label="EMS_SERVICE_TOKEN",
        )
        log.info("service token from EMS_SERVICE_TOKEN is installed")
