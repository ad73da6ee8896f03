"""The ADE9000 as a ``Meter``: start-up sequence, instantaneous values and latched energy.

Energy runs in latch mode: every EGY_TIME period (1 s) the chip overwrites the WATTHR
registers with that period's energy and raises EGYRDY. The registers cannot be reset by us
(RD_RST_EN has an erratum), so the agent polls EGYRDY a few times per period, adds each
latched value to a software counter and persists that counter, which is what makes
``energy_kwh`` cumulative and restart-proof.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from ems_contract import Phase, PhaseReading
from ems_device.meter.ade9000 import registers as reg
from ems_device.meter.ade9000.scaling import Scaling, fixed_5_27
from ems_device.meter.ade9000.spi import (
    Ade9000Error,
    RegisterIO,
    SpiBus,
    energy_45bit,
    to_int32,
)
from ems_device.meter.base import EnergyStore, MemoryEnergyStore, MeterReading, clamp, phase_names

log = logging.getLogger(__name__)


class ResetTimeoutError(Ade9000Error):
    """The chip never reported RSTDONE (not powered, not wired, or wrong chip select)."""


class WrongChipError(Ade9000Error):
    """PART_ID does not identify an ADE9000."""


@dataclass(frozen=True, slots=True)
class Ade9000Config:
    phases: int = 3
    scaling: Scaling = field(default_factory=Scaling)
    line_hz: Literal[50, 60] = 50
    #: How long to wait for RSTDONE after power-up.
    reset_timeout_s: float = 1.0
    crc_retries: int = 2
    #: Poll EGYRDY this often from a background thread; None: only when ``read()`` runs
    #: (tests drive ``poll_energy()`` by hand). Must stay well under the 1 s energy period.
    energy_poll_s: float | None = 0.2

    def config_writes(self) -> list[tuple[int, int]]:
        """Registers written (and verified) before RUN, in order."""
        return [
            (reg.PGA_GAIN, self.scaling.pga_gain_register()),
            (reg.CONFIG2, reg.CONFIG2_HPF),
            (reg.ACCMODE, reg.ACCMODE_60HZ if self.line_hz == 60 else reg.ACCMODE_50HZ),
            (reg.ZX_LP_SEL, reg.ZX_LP_SEL_DEFAULT),
            (reg.VLEVEL, reg.VLEVEL_DEFAULT),
            (reg.EGY_TIME, reg.EGY_TIME_1S),
            (reg.EP_CFG, reg.EP_CFG_LATCH),
        ]


class Ade9000Meter:
    def __init__(
        self,
        bus: SpiBus,
        config: Ade9000Config | None = None,
        energy_store: EnergyStore | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config or Ade9000Config()
        self._phases = phase_names(self._config.phases)
        self._io = RegisterIO(bus, crc_retries=self._config.crc_retries)
        self._store = energy_store or MemoryEnergyStore()
        self._sleep = sleep
        self._monotonic = monotonic
        # One SPI transaction at a time: the sampler and the energy poller share the bus.
        self._lock = threading.RLock()
        stored = self._store.load()
        self._energy_kwh: dict[Phase, float] = {p: stored.get(p, 0.0) for p in self._phases}
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = False

    @property
    def phases(self) -> tuple[Phase, ...]:
        return self._phases

    @property
    def energy_kwh(self) -> dict[Phase, float]:
        with self._lock:
            return dict(self._energy_kwh)

    def start(self) -> None:
        """Bring the chip from reset to RUN; values are meaningless before this."""
        with self._lock:
            self._wait_reset_done()
            part = self._io.read(reg.PART_ID)
            if not part & reg.PART_ID_ADE9000:
                raise WrongChipError(f"PART_ID {part:#010x} is not an ADE9000's")
            for address, value in self._config.config_writes():
                self._io.write_verified(address, value)
            self._io.write(reg.STATUS0, reg.CLEAR_ALL)
            self._io.write(reg.STATUS1, reg.CLEAR_ALL)
            self._io.write_verified(reg.RUN, 1)
            self._started = True
        log.info("ADE9000 running (%d phases, %d Hz)", len(self._phases), self._config.line_hz)
        if self._config.energy_poll_s is not None:
            self._poller = threading.Thread(
                target=self._poll_loop, name="ade9000-energy", daemon=True
            )
            self._poller.start()

    def _wait_reset_done(self) -> None:
        deadline = self._monotonic() + self._config.reset_timeout_s
        while True:
            if self._io.read(reg.STATUS1) & reg.STATUS1_RSTDONE:
                return
            if self._monotonic() >= deadline:
                break
            self._sleep(0.01)
        # The agent restarted while the chip kept running: RSTDONE was cleared by the
        # previous start. Stop it and configure again rather than refuse to start.
        if self._io.read(reg.RUN) == 1:
            log.info("ADE9000 already running; reconfiguring without a reset")
            self._io.write_verified(reg.RUN, 0)
            return
        raise ResetTimeoutError(
            f"no RSTDONE within {self._config.reset_timeout_s:.2f} s; check power and SPI wiring"
        )

    def poll_energy(self) -> bool:
        """Add the latched energy of a completed period, if there is one; True if there was."""
        with self._lock:
            if not self._io.read(reg.STATUS0) & reg.STATUS0_EGYRDY:
                return False
            for phase in self._phases:
                lo_addr, hi_addr = reg.energy_registers(phase)
                count = energy_45bit(self._io.read(lo_addr), self._io.read(hi_addr))
                self._energy_kwh[phase] += self._config.scaling.kwh(count)
            self._io.write(reg.STATUS0, reg.STATUS0_EGYRDY)
            self._store.save(self._energy_kwh)
            return True

    def _poll_loop(self) -> None:
        interval = self._config.energy_poll_s or 0.2
        while not self._stop.wait(interval):
            try:
                self.poll_energy()
            except Ade9000Error as exc:
                log.warning("energy poll failed: %s", exc)

    def read(self) -> MeterReading:
        if not self._started:
            raise Ade9000Error("ADE9000 not started")
        with self._lock:
            if self._poller is None:
                self.poll_energy()
            return {phase: self._read_phase(phase) for phase in self._phases}

    def _read_phase(self, phase: Phase) -> PhaseReading:
        scaling = self._config.scaling

        def code(base: int) -> int:
            return self._io.read(reg.phase_register(base, phase))

        active = scaling.watts(to_int32(code(reg.AWATT)))
        return PhaseReading(
            voltage_rms=round(scaling.volts(code(reg.AVRMS)), 3),
            current_rms=round(scaling.amperes(code(reg.AIRMS)), 4),
            power_watt=round(active, 2),
            power_var=round(scaling.watts(to_int32(code(reg.AVAR))), 2),
            power_va=round(abs(scaling.watts(to_int32(code(reg.AVA)))), 2),
            power_factor=round(clamp(fixed_5_27(to_int32(code(reg.APF))), -1.0, 1.0), 4),
            voltage_thd=round(max(0.0, fixed_5_27(to_int32(code(reg.AVTHD))) * 100), 3),
            current_thd=round(max(0.0, fixed_5_27(to_int32(code(reg.AITHD))) * 100), 3),
            energy_kwh=round(self._energy_kwh[phase], 6),
        )

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        with self._lock:
            self._store.save(self._energy_kwh)
            self._io.close()
