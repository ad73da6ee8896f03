"""Payload models of wire contract v1 (ARCHITECTURE section 2)."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from ems_contract.timestamps import WireTimestamp

PROTOCOL_VERSION: Literal[1] = 1

Phase = Literal["A", "B", "C"]
PHASES: tuple[Phase, ...] = ("A", "B", "C")
BOOT_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"

#: The nine per-phase measurements, in wire order.
MEASUREMENTS: tuple[str, ...] = (
    "voltage_rms",
    "current_rms",
    "power_watt",
    "power_var",
    "power_va",
    "power_factor",
    "voltage_thd",
    "current_thd",
    "energy_kwh",
)

#: Largest single telemetry payload and the batch limits of the contract.
MAX_BATCH_BYTES = 512 * 1024
MAX_BATCH_SAMPLES = 3600

_ENERGY_TO_KWH = {"Wh": 1e-3, "kWh": 1.0, "MWh": 1e3}
_POWER_TO_W = {"W": 1.0, "kW": 1e3}


class _Wire(BaseModel):
    """Telemetry is strict: no coercion of strings to numbers, no NaN/inf, no unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class _Lenient(BaseModel):
    """Status and acks tolerate fields added by newer agents."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)


class PhaseReading(_Wire):
    voltage_rms: float = Field(ge=0)
    current_rms: float = Field(ge=0)
    power_watt: float
    power_var: float
    power_va: float = Field(ge=0)
    power_factor: float = Field(ge=-1, le=1)
    voltage_thd: float = Field(ge=0)
    current_thd: float = Field(ge=0)
    energy_kwh: float


class Units(_Wire):
    energy: Literal["Wh", "kWh", "MWh"] = "kWh"
    power: Literal["W", "kW"] = "W"


class Sample(_Wire):
    v: Literal[1]
    ts: WireTimestamp
    seq: int = Field(ge=0)
    boot: str = Field(pattern=BOOT_PATTERN)
    phases: dict[Phase, PhaseReading] = Field(min_length=1, max_length=3)
    units: Units | None = None
    device_id: str | None = None

    def normalized(self) -> Sample:
        """The same sample in kWh and W, with no ``units``; itself when already so (the
        models are frozen, so sharing is safe and the common case copies nothing)."""
        if self.units is None:
            return self
        if self.units.energy == "kWh" and self.units.power == "W":
            return self.model_copy(update={"units": None})
        ef = _ENERGY_TO_KWH[self.units.energy]
        pf = _POWER_TO_W[self.units.power]
        phases = {
            name: reading.model_copy(
                update={
                    "energy_kwh": reading.energy_kwh * ef,
                    "power_watt": reading.power_watt * pf,
                    "power_var": reading.power_var * pf,
                    "power_va": reading.power_va * pf,
                }
            )
            for name, reading in self.phases.items()
        }
        return self.model_copy(update={"phases": phases, "units": None})


class Batch(BaseModel):
    """The envelope of a replayed backlog; its samples are validated one by one."""

    model_config = ConfigDict(extra="forbid", strict=True)

    v: Literal[1]
    samples: list[Any] = Field(min_length=1, max_length=MAX_BATCH_SAMPLES)
    device_id: str | None = None


class Status(_Lenient):
    v: Literal[1]
    state: Literal["online", "offline"]
    ts: WireTimestamp | None = None
    boot: str | None = None
    agent: str | None = None
    relays: dict[Phase, bool] | None = None
    backlog: int | None = Field(default=None, ge=0)
    interval: float | None = None
    reason: str | None = None


def last_will() -> Status:
    """The retained last will every device registers: ``{"v": 1, "state": "offline"}``."""
    return Status(v=1, state="offline")


class SetRelayArgs(_Wire):
    phase: Phase
    on: bool


class SetIntervalArgs(_Wire):
    seconds: float = Field(ge=0.1, le=3600)


class EmptyArgs(_Wire):
    pass


class _CommandBase(_Lenient):
    v: Literal[1]
    id: UUID
    expires: WireTimestamp | None = None


class SetRelayCommand(_CommandBase):
    name: Literal["set_relay"]
    args: SetRelayArgs


class PingCommand(_CommandBase):
    name: Literal["ping"]
    args: EmptyArgs = EmptyArgs()


class SetIntervalCommand(_CommandBase):
    name: Literal["set_interval"]
    args: SetIntervalArgs


Command = Annotated[SetRelayCommand | PingCommand | SetIntervalCommand, Field(discriminator="name")]
COMMAND_NAMES: tuple[str, ...] = ("set_relay", "ping", "set_interval")
command_adapter: TypeAdapter[SetRelayCommand | PingCommand | SetIntervalCommand] = TypeAdapter(
    Command
)

AckStatus = Literal["ok", "error", "rejected", "expired"]


class Ack(_Lenient):
    v: Literal[1]
    id: UUID
    status: AckStatus
    ts: WireTimestamp
    result: dict[str, Any] | None = None
    error: str | None = None

    @field_validator("result")
    @classmethod
    def _finite(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            for item in value.values():
                if isinstance(item, float) and not math.isfinite(item):
                    raise ValueError("result holds a non-finite number")
        return value


def encode(model: BaseModel) -> bytes:
    """Serialise a contract model for the wire (UTF-8 JSON, absent optionals left out)."""
    return model.model_dump_json(exclude_none=True).encode()
