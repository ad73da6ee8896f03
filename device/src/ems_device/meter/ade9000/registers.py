"""ADE9000 register addresses and bits (data sheet Rev. B; see /work/shared/research/ade9000.md).

Phase B and C measurement registers sit 0x20 and 0x40 above phase A; the energy registers
use a stride of 0x3C instead.
"""

from __future__ import annotations

from typing import Final

from ems_contract import Phase

# Calibration gains (32-bit, gain = 1 + reg / 2**27); left at reset values, see README.
AIGAIN: Final = 0x000
AVGAIN: Final = 0x00B
APGAIN: Final = 0x00E
CONFIG0: Final = 0x060

AIRMS: Final = 0x20C
AVRMS: Final = 0x20D
AWATT: Final = 0x210
AVAR: Final = 0x211
AVA: Final = 0x212
APF: Final = 0x216
AVTHD: Final = 0x217
AITHD: Final = 0x218
PHASE_STRIDE: Final = 0x20

AWATTHR_LO: Final = 0x2E6
AWATTHR_HI: Final = 0x2E7
ENERGY_STRIDE: Final = 0x3C

STATUS0: Final = 0x402
STATUS1: Final = 0x403
VLEVEL: Final = 0x40F
APERIOD: Final = 0x418
PART_ID: Final = 0x472

# 16-bit registers (0x480..0x4FE).
RUN: Final = 0x480
CONFIG1: Final = 0x481
ACCMODE: Final = 0x492
ZX_LP_SEL: Final = 0x49A
CRC_SPI: Final = 0x4A9
CONFIG2: Final = 0x4AF
EP_CFG: Final = 0x4B0
EGY_TIME: Final = 0x4B2
PGA_GAIN: Final = 0x4B9
VERSION: Final = 0x4FE

FIRST_16BIT: Final = 0x480
LAST_16BIT: Final = 0x4FE

STATUS0_EGYRDY: Final = 1 << 0
STATUS1_RSTDONE: Final = 1 << 16
PART_ID_ADE9000: Final = 1 << 20
CLEAR_ALL: Final = 0xFFFF_FFFF

# Typical configuration (research notes): HPF 1.25 Hz, wye, zero-crossing on all phases,
# 1 s energy period at 8 kSPS, energy on in latch mode (RD_RST_EN stays 0: erratum).
CONFIG2_HPF: Final = 0x0C00
ACCMODE_50HZ: Final = 0x0000
ACCMODE_60HZ: Final = 0x0100
ZX_LP_SEL_DEFAULT: Final = 0x001E
VLEVEL_DEFAULT: Final = 0x0022EA28
EGY_TIME_1S: Final = 0x1F3F
EP_CFG_LATCH: Final = 0x0011

_PHASE_INDEX: Final[dict[Phase, int]] = {"A": 0, "B": 1, "C": 2}


def is_16bit(address: int) -> bool:
    return FIRST_16BIT <= address <= LAST_16BIT


def phase_register(base: int, phase: Phase) -> int:
    """A measurement register of ``phase`` given its phase-A address."""
    return base + PHASE_STRIDE * _PHASE_INDEX[phase]


def energy_registers(phase: Phase) -> tuple[int, int]:
    """(WATTHR_LO, WATTHR_HI) of ``phase``."""
    offset = ENERGY_STRIDE * _PHASE_INDEX[phase]
    return AWATTHR_LO + offset, AWATTHR_HI + offset
