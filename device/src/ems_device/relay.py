"""Relays that switch each phase's load, behind a small protocol.

``MemoryRelay`` is both the test fake and the choice for a meter without relays;
``SysfsGpioRelay`` drives one GPIO line per phase through ``/sys/class/gpio``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from ems_contract import Phase

log = logging.getLogger(__name__)


class RelayError(RuntimeError):
    """A relay could not be switched or read."""


class UnknownPhaseError(RelayError):
    """The device has no relay on that phase."""


class Relay(Protocol):
    @property
    def phases(self) -> tuple[Phase, ...]: ...

    def states(self) -> dict[Phase, bool]: ...

    def set(self, phase: Phase, on: bool) -> None: ...


class MemoryRelay:
    def __init__(self, phases: tuple[Phase, ...] = ("A", "B", "C"), on: bool = True) -> None:
        self._states: dict[Phase, bool] = dict.fromkeys(phases, on)
        #: Every switching call in order, so tests can tell execution from a re-ack.
        self.history: list[tuple[Phase, bool]] = []

    @property
    def phases(self) -> tuple[Phase, ...]:
        return tuple(self._states)

    def states(self) -> dict[Phase, bool]:
        return dict(self._states)

    def set(self, phase: Phase, on: bool) -> None:
        if phase not in self._states:
            raise UnknownPhaseError(f"no relay on phase {phase}")
        self._states[phase] = on
        self.history.append((phase, on))


def parse_pins(spec: str) -> dict[Phase, int]:
    """``"A:17,B:27,C:22"`` -> ``{"A": 17, "B": 27, "C": 22}``."""
    pins: dict[Phase, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, number = item.partition(":")
        name = name.strip().upper()
        if name not in ("A", "B", "C") or not number.strip().isdigit():
            raise ValueError(f"relay pin must look like A:17, got {item!r}")
        pins[name] = int(number)  # type: ignore[index]
    if not pins:
        raise ValueError("no relay pins given")
    return pins


class SysfsGpioRelay:
    """One output line per phase under ``root`` (``/sys/class/gpio`` on a Pi).

    Numbers are the kernel's GPIO numbers; on kernels >= 6.6 a Pi's BCM pin n is usually
    ``512 + n`` (see ``/sys/kernel/debug/gpio``).
    """

    def __init__(
        self,
        pins: Mapping[Phase, int],
        root: Path = Path("/sys/class/gpio"),
        active_low: bool = False,
        export_timeout_s: float = 2.0,
    ) -> None:
        self._pins = dict(pins)
        self._root = root
        self._active_low = active_low
        for pin in self._pins.values():
            self._export(pin, export_timeout_s)

    def _line(self, pin: int) -> Path:
        return self._root / f"gpio{pin}"

    def _export(self, pin: int, timeout_s: float) -> None:
        line = self._line(pin)
        try:
            if not line.exists():
                (self._root / "export").write_text(str(pin))
                deadline = time.monotonic() + timeout_s
                # udev applies permissions to the new directory asynchronously.
                while not (line / "direction").exists():
                    if time.monotonic() > deadline:
                        raise RelayError(f"GPIO {pin} did not appear after export")
                    time.sleep(0.02)
            if (line / "direction").read_text().strip() != "out":
                # "high"/"low" set direction and level atomically: no glitch on the relay.
                current = (line / "value").read_text().strip() if (line / "value").exists() else "0"
                (line / "direction").write_text("high" if current == "1" else "low")
        except OSError as exc:
            raise RelayError(f"cannot set up GPIO {pin}: {exc}") from exc

    @property
    def phases(self) -> tuple[Phase, ...]:
        return tuple(self._pins)

    def states(self) -> dict[Phase, bool]:
        result: dict[Phase, bool] = {}
        for phase, pin in self._pins.items():
            try:
                level = (self._line(pin) / "value").read_text().strip() == "1"
            except OSError as exc:
                raise RelayError(f"cannot read GPIO {pin}: {exc}") from exc
            result[phase] = level != self._active_low
        return result

    def set(self, phase: Phase, on: bool) -> None:
        if phase not in self._pins:
            raise UnknownPhaseError(f"no relay on phase {phase}")
        pin = self._pins[phase]
        level = on != self._active_low
        try:
            (self._line(pin) / "value").write_text("1" if level else "0")
        except OSError as exc:
            raise RelayError(f"cannot switch GPIO {pin}: {exc}") from exc
        log.info("relay %s switched %s", phase, "on" if on else "off")
