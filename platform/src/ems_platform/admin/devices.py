"""The device registry: add (with its token), list, get, delete."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from pydantic import BaseModel

from ems_access.store import create_token, notify_access_changed
from ems_contract import PHASES, is_valid_device_id
from ems_contract.topics import DEVICE_ID_PATTERN
from ems_platform.core.db import Pool
from ems_platform.core.errors import PlatformError

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 200
_COLUMNS = "device_id, name, timezone, phases, created_at, online, last_seen, status, status_at"


class InvalidDeviceError(PlatformError, ValueError):
    """A device id, time zone, phase list or name that is not allowed; says which and why."""


class DeviceExistsError(PlatformError):
    """A device with that id is already registered."""


class DeviceRow(BaseModel):
    device_id: str
    name: str
    timezone: str
    phases: list[str]
    created_at: datetime
    online: bool
    last_seen: datetime | None
    status: dict[str, Any] | None
    status_at: datetime | None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> DeviceRow:
        data = dict(record)
        if isinstance(data["status"], str):
            data["status"] = json.loads(data["status"])
        return cls.model_validate(data)


def validate_device_id(device_id: str) -> str:
    if not is_valid_device_id(device_id):
        raise InvalidDeviceError(f"device id must match {DEVICE_ID_PATTERN}, got {device_id!r}")
    return device_id


def _validate(
    device_id: str, name: str, timezone: str, phases: Iterable[str]
) -> tuple[str, str, str, list[str]]:
    validate_device_id(device_id)
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidDeviceError(f"name is longer than {MAX_NAME_LENGTH} characters")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidDeviceError(
            f"unknown time zone {timezone!r}; use an IANA name such as 'Europe/Berlin'"
        ) from None
    phase_list = list(phases)
    if not phase_list or len(set(phase_list)) != len(phase_list):
        raise InvalidDeviceError("phases must list one to three distinct phases")
    unknown = [p for p in phase_list if p not in PHASES]
    if unknown:
        raise InvalidDeviceError(f"unknown phases {unknown}; allowed: {list(PHASES)}")
    return device_id, name, timezone, sorted(phase_list)


async def add_device(
    pool: Pool,
    device_id: str,
    *,
    name: str = "",
    timezone: str = "UTC",
    phases: Iterable[str] = PHASES,
) -> tuple[DeviceRow, str]:
    """Register a device and create its token; the plaintext token is returned only here."""
    device_id, name, timezone, phase_list = _validate(device_id, name, timezone, phases)
    # One transaction: never a device without a way to log in, nor a token without a device.
    async with pool.acquire() as conn, conn.transaction():
        try:
            record = await conn.fetchrow(
                f"INSERT INTO devices (device_id, name, timezone, phases) VALUES ($1, $2, $3, $4)"
                f" RETURNING {_COLUMNS}",
                device_id,
                name,
                timezone,
                phase_list,
            )
        except asyncpg.UniqueViolationError as exc:
            raise DeviceExistsError(f"device {device_id!r} already exists") from exc
        assert record is not None
        _, token = await create_token(
            conn, role="device", label=f"device {device_id}", device_id=device_id
        )
    log.info("device %s registered", device_id)
    return DeviceRow.from_record(record), token


async def list_devices(pool: Pool) -> list[DeviceRow]:
    records = await pool.fetch(f"SELECT {_COLUMNS} FROM devices ORDER BY device_id")
    return [DeviceRow.from_record(r) for r in records]


async def get_device(pool: Pool, device_id: str) -> DeviceRow | None:
    record = await pool.fetchrow(f"SELECT {_COLUMNS} FROM devices WHERE device_id = $1", device_id)
    return None if record is None else DeviceRow.from_record(record)


async def delete_device(pool: Pool, device_id: str) -> bool:
    """Remove a device, its tokens and commands (by cascade); its readings stay as history."""
    async with pool.acquire() as conn, conn.transaction():
        token_ids = await conn.fetch("SELECT id FROM tokens WHERE device_id = $1", device_id)
        deleted = await conn.fetchval(
            "DELETE FROM devices WHERE device_id = $1 RETURNING device_id", device_id
        )
        # The cascade removed the device's tokens; tell every access cache (broker, API, WS)
        # so live sessions end instead of riding out a cache TTL.
        for record in token_ids:
            await notify_access_changed(conn, record["id"])
    if deleted is not None:
        log.info("device %s deleted", device_id)
    return deleted is not None
