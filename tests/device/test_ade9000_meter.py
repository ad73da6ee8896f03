"""The ADE9000 meter on the emulated chip: start-up sequence, scaling and latched energy."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from ems_device.db import DbEnergyStore, DeviceDb
from ems_device.meter.ade9000 import (
    Ade9000Config,
    Ade9000Error,
    Ade9000Meter,
    ResetTimeoutError,
    Scaling,
    WriteVerifyError,
    WrongChipError,
)
from ems_device.meter.ade9000 import registers as reg
from ems_device.meter.ade9000.scaling import POWER_FULL_SCALE, RMS_FULL_SCALE
from ems_device.meter.base import MemoryEnergyStore
from tests.device.fakes import FakeAde9000, ManualClock


def make_meter(
    chip: FakeAde9000,
    store: MemoryEnergyStore | DbEnergyStore | None = None,
    **config: object,
) -> Ade9000Meter:
    clock = ManualClock()
    return Ade9000Meter(
        chip,
        Ade9000Config(energy_poll_s=None, **config),  # type: ignore[arg-type]
        energy_store=store or MemoryEnergyStore(),
        sleep=clock.advance,
        monotonic=clock.monotonic,
    )


def test_start_up_sequence_order() -> None:
    chip = FakeAde9000(rstdone_after_reads=3)
    meter = make_meter(chip, line_hz=60, scaling=Scaling(voltage_gain=2, current_gain=4))
    meter.start()
    writes = chip.writes
    # Configuration first (each verified by a read-back), STATUS cleared, RUN = 1 last.
    assert writes[:7] == [
        (reg.PGA_GAIN, 0b01_01_01_10_10_10_10),  # VC VB VA = 2, IN IC IB IA = 4
        (reg.CONFIG2, 0x0C00),
        (reg.ACCMODE, 0x0100),
        (reg.ZX_LP_SEL, 0x001E),
        (reg.VLEVEL, 0x0022EA28),
        (reg.EGY_TIME, 0x1F3F),
        (reg.EP_CFG, 0x0011),
    ]
    assert writes[7:] == [(reg.STATUS0, 0xFFFF_FFFF), (reg.STATUS1, 0xFFFF_FFFF), (reg.RUN, 1)]
    # RSTDONE was polled until it appeared (three reads without it), before any write.
    assert chip.reads[:5] == [reg.STATUS1] * 4 + [reg.PART_ID]
    for address, _ in writes[:7]:
        assert address in chip.reads  # read back
    assert chip.regs[reg.RUN] == 1


def test_start_up_fails_without_rstdone() -> None:
    chip = FakeAde9000(rstdone_after_reads=10_000)
    with pytest.raises(ResetTimeoutError, match="no RSTDONE"):
        make_meter(chip).start()
    assert chip.writes == []


def test_warm_start_when_the_chip_is_already_running() -> None:
    chip = FakeAde9000()
    chip.regs[reg.STATUS1] = 0  # RSTDONE cleared by a previous agent
    chip.regs[reg.RUN] = 1
    make_meter(chip).start()
    assert chip.writes[0] == (reg.RUN, 0)
    assert chip.writes[-1] == (reg.RUN, 1)


def test_wrong_part_id_is_refused() -> None:
    with pytest.raises(WrongChipError):
        make_meter(FakeAde9000(part_id=0)).start()


def test_config_write_that_does_not_stick_fails_start() -> None:
    chip = FakeAde9000()
    chip.ignore_writes.add(reg.EP_CFG)
    with pytest.raises(WriteVerifyError):
        make_meter(chip).start()
    assert (reg.RUN, 1) not in chip.writes


def test_read_before_start_is_an_error() -> None:
    with pytest.raises(Ade9000Error, match="not started"):
        make_meter(FakeAde9000()).read()


def test_scaling_full_scale_numbers() -> None:
    s = Scaling(voltage_gain=1, current_gain=2, voltage_divider=1001, ct_ratio=2000, burden_ohms=10)
    assert s.voltage_full_scale == pytest.approx(0.70710678 * 1001)
    assert s.current_full_scale == pytest.approx(0.70710678 / 2 * 200)
    assert s.power_full_scale == pytest.approx(s.voltage_full_scale * s.current_full_scale)
    assert s.volts(RMS_FULL_SCALE) == pytest.approx(707.82, abs=0.01)
    assert s.amperes(RMS_FULL_SCALE // 2) == pytest.approx(35.355, abs=0.001)
    assert s.watts(-POWER_FULL_SCALE) == pytest.approx(-s.power_full_scale)
    # One second at full-scale power: 8000 samples of the full-scale code.
    assert s.kwh(POWER_FULL_SCALE * 8000) == pytest.approx(s.power_full_scale / 3600 / 1000)
    with pytest.raises(ValueError):
        Scaling(voltage_gain=3)  # type: ignore[arg-type]


def test_phase_reading_scaled_from_registers() -> None:
    chip = FakeAde9000()
    scaling = Scaling(voltage_divider=1001, ct_ratio=2500, burden_ohms=10.2)
    meter = make_meter(chip, phases=3, scaling=scaling)
    meter.start()
    volts = 230.0
    amps = 5.0
    pf = 0.96
    v_code = round(volts / scaling.voltage_full_scale * RMS_FULL_SCALE)
    i_code = round(amps / scaling.current_full_scale * RMS_FULL_SCALE)
    watts = volts * amps * pf
    va = volts * amps
    var = math.sqrt(va**2 - watts**2)
    for phase in ("A", "B", "C"):
        chip.set_phase(reg.AVRMS, phase, v_code)
        chip.set_phase(reg.AIRMS, phase, i_code)
        chip.set_phase(reg.AWATT, phase, round(watts / scaling.power_full_scale * POWER_FULL_SCALE))
        chip.set_phase(reg.AVAR, phase, round(-var / scaling.power_full_scale * POWER_FULL_SCALE))
        chip.set_phase(reg.AVA, phase, round(va / scaling.power_full_scale * POWER_FULL_SCALE))
        chip.set_phase(reg.APF, phase, round(pf * 2**27))
        chip.set_phase(reg.AVTHD, phase, round(0.018 * 2**27))
        chip.set_phase(reg.AITHD, phase, round(0.062 * 2**27))
    chip.set_phase(reg.APF, "C", round(-pf * 2**27))  # exporting phase: negative PF
    reading = meter.read()
    assert set(reading) == {"A", "B", "C"}
    a = reading["A"]
    assert a.voltage_rms == pytest.approx(volts, abs=0.01)
    assert a.current_rms == pytest.approx(amps, abs=0.001)
    assert a.power_watt == pytest.approx(watts, abs=0.1)
    assert a.power_var == pytest.approx(-var, abs=0.1)
    assert a.power_va == pytest.approx(va, abs=0.1)
    assert a.power_factor == pytest.approx(pf, abs=1e-4)
    assert a.voltage_thd == pytest.approx(1.8, abs=1e-3)
    assert a.current_thd == pytest.approx(6.2, abs=1e-3)
    assert reading["C"].power_factor == pytest.approx(-pf, abs=1e-4)
    # Phase B really came from B's registers (A + 0x20).
    assert reg.phase_register(reg.AVRMS, "B") in chip.reads


def test_single_phase_meter_reads_only_phase_a() -> None:
    chip = FakeAde9000()
    meter = make_meter(chip, phases=1)
    meter.start()
    assert set(meter.read()) == {"A"}
    assert reg.phase_register(reg.AVRMS, "B") not in chip.reads


def test_energy_accumulates_latched_periods_and_clears_egyrdy() -> None:
    chip = FakeAde9000()
    scaling = Scaling()
    meter = make_meter(chip, scaling=scaling)
    meter.start()
    assert meter.poll_energy() is False  # nothing latched yet
    one_second_1kw = round(1000 / scaling.power_full_scale * POWER_FULL_SCALE) * 8000
    for _ in range(3):
        chip.latch_energy({"A": one_second_1kw, "B": 2 * one_second_1kw, "C": -one_second_1kw})
        assert meter.poll_energy() is True
        assert not chip.regs[reg.STATUS0] & reg.STATUS0_EGYRDY
        # The same latched value is not counted twice.
        assert meter.poll_energy() is False
    kwh_per_s = 1.0 / 3600
    assert meter.energy_kwh["A"] == pytest.approx(3 * kwh_per_s, rel=1e-6)
    assert meter.energy_kwh["B"] == pytest.approx(6 * kwh_per_s, rel=1e-6)
    assert meter.energy_kwh["C"] == pytest.approx(-3 * kwh_per_s, rel=1e-6)
    assert meter.read()["A"].energy_kwh == pytest.approx(3 * kwh_per_s, abs=1e-6)


def test_read_polls_energy_when_no_poller_runs() -> None:
    chip = FakeAde9000()
    meter = make_meter(chip)
    meter.start()
    chip.latch_energy({"A": 10**9, "B": 0, "C": 0})
    assert meter.read()["A"].energy_kwh > 0


def test_energy_counter_survives_a_restart(tmp_path: Path) -> None:
    db = DeviceDb(tmp_path / "dev.db")
    chip = FakeAde9000()
    meter = make_meter(chip, store=DbEnergyStore(db))
    meter.start()
    chip.latch_energy({"A": 10**10, "B": 10**10, "C": 10**10})
    meter.poll_energy()
    before = meter.energy_kwh
    meter.close()
    assert chip.closed
    db.close()

    db = DeviceDb(tmp_path / "dev.db")
    chip = FakeAde9000()
    meter = make_meter(chip, store=DbEnergyStore(db))
    meter.start()
    assert meter.energy_kwh == before
    chip.latch_energy({"A": 10**10, "B": 0, "C": 0})
    meter.poll_energy()
    assert meter.energy_kwh["A"] == pytest.approx(2 * before["A"])
    db.close()


def test_background_poller_accumulates() -> None:
    chip = FakeAde9000()
    meter = Ade9000Meter(chip, Ade9000Config(energy_poll_s=0.01))
    meter.start()
    try:
        chip.latch_energy({"A": 10**10, "B": 10**10, "C": 10**10})
        deadline = time.monotonic() + 10
        while meter.energy_kwh["A"] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert meter.energy_kwh["A"] > 0
    finally:
        meter.close()
