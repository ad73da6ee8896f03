"""Relays: the in-memory fake and the sysfs GPIO driver against a directory tree shaped like
/sys/class/gpio (the hardware is the part we fake)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ems_device.relay import (
    MemoryRelay,
    RelayError,
    SysfsGpioRelay,
    UnknownPhaseError,
    parse_pins,
)


def fake_gpio(root: Path, pins: list[int], value: str = "0", direction: str = "in") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "export").write_text("")
    for pin in pins:
        line = root / f"gpio{pin}"
        line.mkdir()
        (line / "value").write_text(value)
        (line / "direction").write_text(direction)
    return root


def test_parse_pins() -> None:
    assert parse_pins("A:17, b:27,C:22") == {"A": 17, "B": 27, "C": 22}
    for bad in ("", "D:4", "A:x", "A17"):
        with pytest.raises(ValueError):
            parse_pins(bad)


def test_memory_relay() -> None:
    relay = MemoryRelay(("A", "B"))
    assert relay.states() == {"A": True, "B": True}
    relay.set("B", False)
    assert relay.states() == {"A": True, "B": False}
    with pytest.raises(UnknownPhaseError):
        relay.set("C", False)


def test_sysfs_relay_sets_output_and_switches(tmp_path: Path) -> None:
    root = fake_gpio(tmp_path / "gpio", [17, 27], value="1")
    relay = SysfsGpioRelay({"A": 17, "B": 27}, root=root)
    # Made an output without changing the level it had.
    assert (root / "gpio17" / "direction").read_text() == "high"
    assert relay.states() == {"A": True, "B": True}
    relay.set("A", False)
    assert (root / "gpio17" / "value").read_text() == "0"
    assert relay.states() == {"A": False, "B": True}
    with pytest.raises(UnknownPhaseError):
        relay.set("C", True)


def test_sysfs_relay_active_low(tmp_path: Path) -> None:
    root = fake_gpio(tmp_path / "gpio", [5], value="1", direction="out")
    relay = SysfsGpioRelay({"A": 5}, root=root, active_low=True)
    assert relay.states() == {"A": False}
    relay.set("A", True)
    assert (root / "gpio5" / "value").read_text() == "0"


def test_sysfs_relay_exports_missing_lines_and_fails_cleanly(tmp_path: Path) -> None:
    root = fake_gpio(tmp_path / "gpio", [])
    with pytest.raises(RelayError, match="GPIO 4 did not appear"):
        SysfsGpioRelay({"A": 4}, root=root, export_timeout_s=0.05)
    assert (root / "export").read_text() == "4"
    with pytest.raises(RelayError, match="cannot set up GPIO 4"):
        SysfsGpioRelay({"A": 4}, root=tmp_path / "absent", export_timeout_s=0.05)
