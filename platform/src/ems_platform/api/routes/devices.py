"""``/api/v1/devices``: the registry, and each device's latest readings."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, Field

from ems_contract import PHASES, Phase
from ems_platform.admin.devices import (
    DeviceExistsError,
    DeviceRow,
    InvalidDeviceError,
    add_device,
    delete_device,
    get_device,
    list_devices,
)
from ems_platform.api.deps import (
    DeviceIdDep,
    OperatorDep,
    PoolDep,
    PrincipalDep,
    ReadableDeviceDep,
)
from ems_platform.core.db import Pool
from ems_platform.queries.latest import Latest, latest_readings

router = APIRouter(prefix="/devices", tags=["devices"])


class DeviceCreate(BaseModel):
    # Validated by the admin service so the API and the CLI give the same messages.
    device_id: str
    name: str = ""
    timezone: str = Field(default="UTC", description="IANA time zone of the site")
    phases: list[Phase] = Field(default_factory=lambda: list(PHASES))


class DeviceCreated(BaseModel):
    device: DeviceRow
    token: str = Field(description="the device's MQTT password; shown only this once")


class DeviceList(BaseModel):
    devices: list[DeviceRow]


async def _existing(pool: Pool, device_id: str) -> DeviceRow:
    device = await get_device(pool, device_id)
    if device is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no device {device_id!r}")
    return device


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DeviceCreated)
async def create_device(body: DeviceCreate, pool: PoolDep, _: OperatorDep) -> DeviceCreated:
    try:
        device, token = await add_device(
            pool, body.device_id, name=body.name, timezone=body.timezone, phases=body.phases
        )
    except InvalidDeviceError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from exc
    except DeviceExistsError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc
    return DeviceCreated(device=device, token=token)


@router.get("", response_model=DeviceList)
async def read_devices(pool: PoolDep, principal: PrincipalDep) -> DeviceList:
    devices = await list_devices(pool)
    return DeviceList(devices=[d for d in devices if principal.can_read_device(d.device_id)])


@router.get("/{device_id}", response_model=DeviceRow)
async def read_device(device_id: ReadableDeviceDep, pool: PoolDep) -> DeviceRow:
    return await _existing(pool, device_id)


@router.delete("/{device_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_device(device_id: DeviceIdDep, pool: PoolDep, _: OperatorDep) -> Response:
    if not await delete_device(pool, device_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no device {device_id!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{device_id}/latest", response_model=Latest)
async def read_latest(device_id: ReadableDeviceDep, pool: PoolDep) -> Latest:
    return await latest_readings(pool, await _existing(pool, device_id))
