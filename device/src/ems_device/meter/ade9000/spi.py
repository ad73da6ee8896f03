"""SPI framing of the ADE9000: command header, 16/32-bit data, CRC-checked reads.

A read clocks out ``header(2) + data(2|4) + crc(2)`` bytes in one chip-select window and gets
the data and its CRC-16-CCITT back in the same positions. Writes carry no CRC, so
configuration writes are read back to verify.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Protocol

from ems_device.meter.ade9000.registers import is_16bit
from ems_device.meter.base import MeterError

log = logging.getLogger(__name__)


class Ade9000Error(MeterError):
    """Base of every ADE9000 failure."""


class CrcError(Ade9000Error):
    """A register read kept failing its CRC check (wiring, noise or too fast a clock)."""


class WriteVerifyError(Ade9000Error):
    """A configuration register did not read back what was written."""


class SpiBus(Protocol):
    def transfer(self, data: bytes) -> bytes:
        """Full-duplex transfer with chip select held low for the whole of ``data``."""
        ...

    def close(self) -> None: ...


def crc16_ccitt(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16-CCITT (polynomial 0x1021, MSB first, initial value 0xFFFF, no final xor)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def command_header(address: int, read: bool) -> bytes:
    if not 0 <= address <= 0xFFF:
        raise ValueError(f"ADE9000 register address out of range: {address:#x}")
    return ((address << 4) | (0x08 if read else 0x00)).to_bytes(2, "big")


def register_width(address: int) -> int:
    return 2 if is_16bit(address) else 4


class SpidevBus:
    """The real bus: ``/dev/spidev<bus>.<device>`` in mode 0, one ``xfer2`` per transaction."""

    def __init__(self, bus: int = 0, device: int = 0, speed_hz: int = 1_000_000) -> None:
        try:
            import spidev  # only on a Pi; imported here so the rest runs anywhere
        except ImportError as exc:
            raise Ade9000Error("the spidev module is not installed") from exc
        self._spi = spidev.SpiDev()
        try:
            self._spi.open(bus, device)
        except OSError as exc:
            raise Ade9000Error(
                f"cannot open /dev/spidev{bus}.{device} (is SPI enabled?): {exc}"
            ) from exc
        self._spi.mode = 0
        self._spi.bits_per_word = 8
        self._spi.max_speed_hz = speed_hz

    def transfer(self, data: bytes) -> bytes:
        try:
            return bytes(self._spi.xfer2(list(data)))
        except OSError as exc:
            raise Ade9000Error(f"SPI transfer failed: {exc}") from exc

    def close(self) -> None:
        self._spi.close()


class RegisterIO:
    """Register-level access to an ADE9000 over any ``SpiBus``."""

    def __init__(self, bus: SpiBus, crc_retries: int = 2) -> None:
        self._bus = bus
        self._retries = crc_retries

    def read(self, address: int) -> int:
        width = register_width(address)
        frame = command_header(address, read=True) + bytes(width + 2)
        for attempt in range(self._retries + 1):
            reply = self._bus.transfer(frame)
            if len(reply) != len(frame):
                raise Ade9000Error(f"SPI returned {len(reply)} bytes, sent {len(frame)}")
            data = reply[2 : 2 + width]
            received = int.from_bytes(reply[2 + width :], "big")
            if crc16_ccitt(data) == received:
                return int.from_bytes(data, "big")
            log.debug("CRC mismatch reading %#05x (attempt %d)", address, attempt + 1)
        raise CrcError(
            f"register {address:#05x}: CRC mismatch on {self._retries + 1} consecutive reads"
        )

    def write(self, address: int, value: int) -> None:
        width = register_width(address)
        if not 0 <= value < (1 << (8 * width)):
            raise ValueError(f"{value:#x} does not fit the {8 * width}-bit register {address:#05x}")
        self._bus.transfer(command_header(address, read=False) + value.to_bytes(width, "big"))

    def write_verified(self, address: int, value: int) -> None:
        self.write(address, value)
        actual = self.read(address)
        if actual != value:
            raise WriteVerifyError(
                f"register {address:#05x}: wrote {value:#x}, read back {actual:#x}"
            )

    def close(self) -> None:
        self._bus.close()

    def __enter__(self) -> RegisterIO:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def to_int32(value: int) -> int:
    """Two's-complement view of a 32-bit register."""
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value & 0x8000_0000 else value


def energy_45bit(lo: int, hi: int) -> int:
    """The signed 45-bit energy value: ``HI`` holds bits 44..13, ``LO`` bits 12..0."""
    return (to_int32(hi) << 13) | (lo & 0x1FFF)
