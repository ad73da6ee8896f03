"""Meters: the ``Meter`` protocol, a simulated meter and the ADE9000 over SPI."""

from ems_device.meter.base import (
    EnergyStore,
    MemoryEnergyStore,
    Meter,
    MeterError,
    MeterReading,
)
from ems_device.meter.simulated import SimulatedMeter

__all__ = [
    "EnergyStore",
    "MemoryEnergyStore",
    "Meter",
    "MeterError",
    "MeterReading",
    "SimulatedMeter",
]
