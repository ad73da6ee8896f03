"""Admin commands that talk to the database directly (for set-up before the API runs)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import typer

from ems_access import ROLES, AccessError
from ems_access.store import create_token
from ems_platform.admin.devices import add_device
from ems_platform.core.errors import PlatformError


async def add_device_cmd(dsn: str, device_id: str, name: str, timezone: str) -> str:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        _, token = await add_device(pool, device_id, name=name, timezone=timezone)
    except PlatformError as exc:
        raise typer.BadParameter(str(exc)) from exc
    finally:
        await pool.close()
    return token


async def create_token_cmd(
    dsn: str, role: str, label: str, device_id: str | None, expires_at: datetime | None
) -> str:
    if role not in ROLES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLES)}", param_hint="--role")
    if expires_at is not None and expires_at.tzinfo is None:
        raise typer.BadParameter("give the expiry with a UTC offset", param_hint="--expires-at")
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        _, token = await create_token(
            pool, role=role, label=label, device_id=device_id, expires_at=expires_at
        )
    except AccessError as exc:
        raise typer.BadParameter(str(exc)) from exc
    finally:
        await pool.close()
    return token
