"""SPI framing of the ADE9000 against an emulated chip: header bytes, widths, CRC, retries."""

from __future__ import annotations

import pytest

from ems_device.meter.ade9000 import registers as reg
from ems_device.meter.ade9000.spi import (
    CrcError,
    RegisterIO,
    WriteVerifyError,
    command_header,
    crc16_ccitt,
    energy_45bit,
    to_int32,
)
from tests.device.fakes import FakeAde9000


def test_crc16_ccitt_known_vectors() -> None:
    # CRC-16/CCITT-FALSE check value and the empty message.
    assert crc16_ccitt(b"123456789") == 0x29B1
    assert crc16_ccitt(b"") == 0xFFFF
    assert crc16_ccitt(bytes([0x00, 0x00])) == 0x1D0F


def test_read_header_matches_the_data_sheet_example() -> None:
    assert command_header(reg.VERSION, read=True) == bytes([0x4F, 0xE8])
    assert command_header(reg.RUN, read=False) == bytes([0x48, 0x00])
    assert command_header(reg.AIRMS, read=True) == bytes([0x20, 0xC8])
    with pytest.raises(ValueError, match="out of range"):
        command_header(0x1000, read=True)


def test_16_bit_register_read_frame_and_value() -> None:
    chip = FakeAde9000()
    chip.regs[reg.VERSION] = 0x00FE
    io = RegisterIO(chip)
    assert io.read(reg.VERSION) == 0x00FE
    assert chip.frames[-1] == bytes([0x4F, 0xE8, 0, 0, 0, 0])


def test_32_bit_register_read_frame_and_value() -> None:
    chip = FakeAde9000()
    chip.regs[reg.AVRMS] = 0x0123_4567
    io = RegisterIO(chip)
    assert io.read(reg.AVRMS) == 0x0123_4567
    assert chip.frames[-1] == bytes([0x20, 0xD8, 0, 0, 0, 0, 0, 0])


@pytest.mark.parametrize(
    ("address", "width"),
    [(0x47F, 4), (0x480, 2), (0x4FE, 2), (0x4FF, 4), (0x000, 4), (0x60, 4)],
)
def test_register_width_boundaries(address: int, width: int) -> None:
    chip = FakeAde9000()
    RegisterIO(chip).read(address)
    assert len(chip.frames[-1]) == 2 + width + 2


def test_write_frames_carry_no_crc() -> None:
    chip = FakeAde9000()
    io = RegisterIO(chip)
    io.write(reg.EP_CFG, 0x0011)
    io.write(reg.VLEVEL, 0x0022EA28)
    assert chip.frames == [
        bytes([0x4B, 0x00, 0x00, 0x11]),
        bytes([0x40, 0xF0, 0x00, 0x22, 0xEA, 0x28]),
    ]
    with pytest.raises(ValueError, match="does not fit"):
        io.write(reg.RUN, 0x1_0000)


def test_a_bad_crc_is_retried_then_accepted() -> None:
    chip = FakeAde9000()
    chip.regs[reg.AIRMS] = 42
    chip.corrupt_reads = 2
    assert RegisterIO(chip, crc_retries=2).read(reg.AIRMS) == 42
    assert chip.reads.count(reg.AIRMS) == 3


def test_persistent_crc_failure_raises_a_named_error() -> None:
    chip = FakeAde9000()
    chip.corrupt_reads = 10
    with pytest.raises(CrcError, match="CRC mismatch on 3 consecutive reads"):
        RegisterIO(chip, crc_retries=2).read(reg.AIRMS)


def test_write_verified_reads_back() -> None:
    chip = FakeAde9000()
    io = RegisterIO(chip)
    io.write_verified(reg.EGY_TIME, reg.EGY_TIME_1S)
    assert chip.regs[reg.EGY_TIME] == reg.EGY_TIME_1S
    chip.ignore_writes.add(reg.CONFIG2)
    with pytest.raises(WriteVerifyError, match="0x4af: wrote 0xc00, read back 0x0"):
        io.write_verified(reg.CONFIG2, reg.CONFIG2_HPF)


def test_signed_views() -> None:
    assert to_int32(0xFFFF_FFFF) == -1
    assert to_int32(0x7FFF_FFFF) == 2**31 - 1
    assert to_int32(0x8000_0000) == -(2**31)
    assert energy_45bit(lo=0x1ABC, hi=0x0000_0002) == (2 << 13) | 0x1ABC
    # Negative energy (export): HI is a signed 32-bit value.
    assert energy_45bit(lo=0x0001, hi=0xFFFF_FFFF) == -(1 << 13) + 1
    assert energy_45bit(lo=0xFFFF_E000, hi=5) == 5 << 13  # bits above 12 of LO are ignored
