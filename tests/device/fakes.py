"""Fakes for the device's hardware boundaries (clock, ADE9000 over SPI) and an MQTT observer."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from ems_contract import Phase
from ems_device.meter.ade9000 import registers as reg
from ems_device.meter.ade9000.spi import crc16_ccitt


class ManualClock:
    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime(2026, 11, 22, 8, 0, 0, tzinfo=UTC)
        self._mono = 1000.0

    def now(self) -> datetime:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)
        self._mono += seconds


class FakeAde9000:
    """Emulates the chip's SPI side: a register file, CRC on reads, write-1-to-clear STATUS."""

    def __init__(self, part_id: int = reg.PART_ID_ADE9000, rstdone_after_reads: int = 0) -> None:
        self.regs: dict[int, int] = defaultdict(int)
        self.regs[reg.PART_ID] = part_id
        self.regs[reg.STATUS1] = reg.STATUS1_RSTDONE
        self.rstdone_after_reads = rstdone_after_reads
        self.frames: list[bytes] = []
        self.writes: list[tuple[int, int]] = []
        self.reads: list[int] = []
        #: Corrupt the CRC of this many upcoming reads.
        self.corrupt_reads = 0
        #: Registers that silently ignore writes (a stuck or absent chip).
        self.ignore_writes: set[int] = set()
        self.closed = False

    # -- SpiBus --

    def transfer(self, data: bytes) -> bytes:
        self.frames.append(bytes(data))
        header = int.from_bytes(data[:2], "big")
        address, is_read = header >> 4, bool(header & 0x08)
        width = 2 if reg.is_16bit(address) else 4
        if is_read:
            assert len(data) == 2 + width + 2, f"read frame of {len(data)} bytes for {address:#x}"
            payload = self._read(address).to_bytes(width, "big")
            crc = crc16_ccitt(payload)
            if self.corrupt_reads:
                self.corrupt_reads -= 1
                crc ^= 0x5A5A
            return bytes(2) + payload + crc.to_bytes(2, "big")
        assert len(data) == 2 + width, f"write frame of {len(data)} bytes for {address:#x}"
        self._write(address, int.from_bytes(data[2:], "big"))
        return bytes(len(data))

    def close(self) -> None:
        self.closed = True

    # -- chip behaviour --

    def _read(self, address: int) -> int:
        self.reads.append(address)
        value = self.regs[address]
        if address == reg.STATUS1 and self.rstdone_after_reads > 0:
            self.rstdone_after_reads -= 1
            value &= ~reg.STATUS1_RSTDONE
        return value

    def _write(self, address: int, value: int) -> None:
        self.writes.append((address, value))
        if address in self.ignore_writes:
            return
        if address in (reg.STATUS0, reg.STATUS1):
            self.regs[address] &= ~value
        else:
            self.regs[address] = value

    def set_phase(self, base: int, phase: Phase, value: int) -> None:
        """Set a measurement register (signed values stored as two's complement)."""
        self.regs[reg.phase_register(base, phase)] = value & 0xFFFF_FFFF

    def latch_energy(self, counts: dict[Phase, int]) -> None:
        """End an energy period: WATTHR registers take these 45-bit values, EGYRDY rises."""
        for phase, count in counts.items():
            lo, hi = reg.energy_registers(phase)
            self.regs[hi] = (count >> 13) & 0xFFFF_FFFF
            self.regs[lo] = count & 0x1FFF
        self.regs[reg.STATUS0] |= reg.STATUS0_EGYRDY


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int


class MqttObserver:
    """A plain paho subscriber in its own thread that records everything it receives."""

    def __init__(
        self,
        port: int,
        topics: list[str],
        client_id: str = "",
        clean_session: bool = True,
        host: str = "127.0.0.1",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self._topics = topics
        self._lock = threading.Lock()
        self._received: list[Received] = []
        self._subscribed = threading.Event()
        self.client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=paho.MQTTv311,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(timeout=20):
            self.close()
            raise TimeoutError("observer did not get its SUBACK")

    def _on_connect(self, client: paho.Client, *args: Any) -> None:
        client.subscribe([(topic, 1) for topic in self._topics])

    def _on_subscribe(self, *args: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self._received.append(Received(msg.topic, bytes(msg.payload), msg.retain, msg.qos))

    def received(self, topic: str | None = None) -> list[Received]:
        with self._lock:
            return [m for m in self._received if topic is None or m.topic == topic]

    async def wait_for(
        self,
        predicate: Callable[[list[Received]], bool],
        timeout: float = 30.0,
        what: str = "condition",
    ) -> list[Received]:
        """Poll (bounded) until ``predicate`` holds for everything received so far."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.received()
            if predicate(messages):
                return messages
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; got {len(messages)} messages")
            await asyncio.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def eventually(
    predicate: Callable[[], bool], timeout: float = 30.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
