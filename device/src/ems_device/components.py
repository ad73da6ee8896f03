"""Builds the real meter and relay a ``DeviceSettings`` asks for."""

from __future__ import annotations

from ems_device.clock import Clock
from ems_device.db import DbEnergyStore, DeviceDb
from ems_device.meter.base import Meter
from ems_device.meter.simulated import SimulatedMeter
from ems_device.relay import MemoryRelay, Relay, SysfsGpioRelay, parse_pins
from ems_device.settings import DeviceSettings


def build_meter(settings: DeviceSettings, db: DeviceDb, clock: Clock) -> Meter:
    """The configured meter, started; blocking (the ADE9000 start-up waits for the chip)."""
    store = DbEnergyStore(db)
    if settings.device_meter == "simulated":
        return SimulatedMeter(
            phases=settings.device_phases,
            seed=settings.simulation_seed,
            clock=clock,
            energy_store=store,
        )
    from ems_device.meter.ade9000 import Ade9000Config, Ade9000Meter, Scaling, SpidevBus

    config = Ade9000Config(
        phases=settings.device_phases,
        line_hz=settings.device_line_hz,
        scaling=Scaling(
            voltage_gain=settings.device_voltage_gain,
            current_gain=settings.device_current_gain,
            voltage_divider=settings.device_voltage_divider,
            ct_ratio=settings.device_ct_ratio,
            burden_ohms=settings.device_burden_ohms,
        ),
    )
    bus = SpidevBus(
        settings.device_spi_bus, settings.device_spi_device, settings.device_spi_speed_hz
    )
    meter = Ade9000Meter(bus, config, energy_store=store)
    try:
        meter.start()
    except BaseException:
        meter.close()
        raise
    return meter


def build_relay(settings: DeviceSettings, meter: Meter) -> Relay:
    if settings.device_relay == "sysfs":
        return SysfsGpioRelay(
            parse_pins(settings.device_relay_pins),
            root=settings.device_gpio_root,
            active_low=settings.device_relay_active_low,
        )
    return MemoryRelay(meter.phases)
