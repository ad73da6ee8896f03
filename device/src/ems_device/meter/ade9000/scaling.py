"""From ADE9000 register codes to volts, amperes, watts and kWh.

The ADC's input full scale is +-1/G V peak (0.7071/G V rms). A voltage divider of ratio k_V
and a current transformer of ratio N with burden R (k_I = N / R, amperes per volt) map that
back to line quantities. Full-scale codes come from the data sheet; the Linux IIO driver's
constants belong to the ADE9078 and must not be used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

RMS_FULL_SCALE: Final = 52_702_092
POWER_FULL_SCALE: Final = 20_694_066
SAMPLE_RATE_HZ: Final = 8000
FIXED_5_27: Final = 1 << 27
SQRT_HALF: Final = math.sqrt(0.5)

PgaGain = Literal[1, 2, 4]
_PGA_CODE: Final[dict[int, int]] = {1: 0b00, 2: 0b01, 4: 0b10}


@dataclass(frozen=True, slots=True)
class Scaling:
    voltage_gain: PgaGain = 1
    current_gain: PgaGain = 1
    #: Line volts per ADC input volt (e.g. 1 MOhm + 1 kOhm divider: 1001).
    voltage_divider: float = 1001.0
    #: Current transformer turns ratio (primary amperes per secondary ampere).
    ct_ratio: float = 2500.0
    #: Burden resistor across the CT secondary, in ohms.
    burden_ohms: float = 10.2

    def __post_init__(self) -> None:
        if self.voltage_gain not in _PGA_CODE or self.current_gain not in _PGA_CODE:
            raise ValueError("PGA gain must be 1, 2 or 4")
        if min(self.voltage_divider, self.ct_ratio, self.burden_ohms) <= 0:
            raise ValueError("divider ratio, CT ratio and burden must be positive")

    @property
    def voltage_full_scale(self) -> float:
        """Line volts rms at the RMS register's full-scale code."""
        return SQRT_HALF / self.voltage_gain * self.voltage_divider

    @property
    def current_full_scale(self) -> float:
        """Line amperes rms at the RMS register's full-scale code."""
        return SQRT_HALF / self.current_gain * (self.ct_ratio / self.burden_ohms)

    @property
    def power_full_scale(self) -> float:
        """Watts (and var, VA) at the power registers' full-scale code."""
        return self.voltage_full_scale * self.current_full_scale

    @property
    def kwh_per_energy_count(self) -> float:
        """kWh per unit of the 45-bit energy value: the sum of WATT codes at 8 kSPS."""
        return self.power_full_scale / (POWER_FULL_SCALE * SAMPLE_RATE_HZ * 3600 * 1000)

    def pga_gain_register(self) -> int:
        """PGA_GAIN: two bits per channel, IA IB IC IN in bits 0..7, VA VB VC in bits 8..13."""
        current = _PGA_CODE[self.current_gain]
        voltage = _PGA_CODE[self.voltage_gain]
        value = 0
        for channel in range(4):
            value |= current << (2 * channel)
        for channel in range(3):
            value |= voltage << (8 + 2 * channel)
        return value

    def volts(self, code: int) -> float:
        return code / RMS_FULL_SCALE * self.voltage_full_scale

    def amperes(self, code: int) -> float:
        return code / RMS_FULL_SCALE * self.current_full_scale

    def watts(self, code: int) -> float:
        """Active, reactive or apparent power from a signed power code."""
        return code / POWER_FULL_SCALE * self.power_full_scale

    def kwh(self, energy_count: int) -> float:
        return energy_count * self.kwh_per_energy_count


def fixed_5_27(code: int) -> float:
    return code / FIXED_5_27
