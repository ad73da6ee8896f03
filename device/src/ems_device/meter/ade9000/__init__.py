"""The Analog Devices ADE9000 three-phase energy metering IC over SPI."""

from ems_device.meter.ade9000.meter import (
    Ade9000Config,
    Ade9000Meter,
    ResetTimeoutError,
    WrongChipError,
)
from ems_device.meter.ade9000.scaling import Scaling
from ems_device.meter.ade9000.spi import (
    Ade9000Error,
    CrcError,
    RegisterIO,
    SpiBus,
    SpidevBus,
    WriteVerifyError,
    crc16_ccitt,
)

__all__ = [
    "Ade9000Config",
    "Ade9000Error",
    "Ade9000Meter",
    "CrcError",
    "RegisterIO",
    "ResetTimeoutError",
    "Scaling",
    "SpiBus",
    "SpidevBus",
    "WriteVerifyError",
    "WrongChipError",
    "crc16_ccitt",
]
