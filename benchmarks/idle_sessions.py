"""Many idle, authenticated device sessions from one asyncio process.

Each session is what a real EMS device keeps open: MQTT 3.1.1, its device id as client id
and username, its token as password, clean_session = 0, keepalive 60 s, a retained QoS 1
last will on ``ems/<id>/status``, and (with ``subscribe``) a QoS 1 subscription to
``ems/<id>/cmd``. The packets are written by hand: a paho client per session would need a
thread each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from benchmarks.bench_db import Device
from benchmarks.mqtt_wire import remaining_length, utf8_field

logger = logging.getLogger(__name__)

KEEPALIVE_S = 60
CONNECT_TIMEOUT_S = 30.0
CLOSE_TIMEOUT_S = 10.0
WILL_PAYLOAD = b'{"v": 1, "state": "offline"}'
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


class SessionRefusedError(RuntimeError):
    """The broker refused or did not answer a CONNECT or SUBSCRIBE."""


def connect_packet(device: Device, *, keepalive: int = KEEPALIVE_S) -> bytes:
    # username | password | will retain | will QoS 1 | will flag; clean_session = 0
    flags = 0x80 | 0x40 | 0x20 | 0x08 | 0x04
    body = (
        utf8_field("MQTT")
        + bytes([4, flags])
        + struct.pack("!H", keepalive)
        + utf8_field(device.device_id)
        + utf8_field(f"ems/{device.device_id}/status")
        + utf8_field(WILL_PAYLOAD)
        + utf8_field(device.device_id)
        + utf8_field(device.token)
    )
    return b"\x10" + remaining_length(len(body)) + body


def subscribe_packet(topic: str, packet_id: int = 1) -> bytes:
    body = struct.pack("!H", packet_id) + utf8_field(topic) + b"\x01"
    return b"\x82" + remaining_length(len(body)) + body


@dataclass
class IdleSession:
    device_id: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    alive: bool = True


async def open_session(
    host: str, port: int, device: Device, *, subscribe: bool = False
) -> IdleSession:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError as exc:
        raise SessionRefusedError(f"{device.device_id}: {type(exc).__name__}") from exc
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            writer.write(connect_packet(device))
            await writer.drain()
            connack = await reader.readexactly(4)
            if connack[0] != 0x20 or connack[3] != 0:
                raise SessionRefusedError(f"{device.device_id}: CONNACK {connack.hex()}")
            if not subscribe:
                return IdleSession(device.device_id, reader, writer)
            writer.write(subscribe_packet(f"ems/{device.device_id}/cmd"))
            await writer.drain()
            suback = await reader.readexactly(5)
            if suback[0] != 0x90 or suback[4] not in (0, 1):
                raise SessionRefusedError(f"{device.device_id}: SUBACK {suback.hex()}")
    except (TimeoutError, asyncio.IncompleteReadError, OSError) as exc:
        writer.close()
        raise SessionRefusedError(f"{device.device_id}: {type(exc).__name__}") from exc
    except SessionRefusedError:
        writer.close()
        raise
    return IdleSession(device.device_id, reader, writer)


@dataclass
class SessionPool:
    """Idle sessions kept open (and pinged) until `close()`."""

    host: str
    port: int
    concurrency: int = 100
    subscribe: bool = False
    sessions: list[IdleSession] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _watchers: set[asyncio.Task[None]] = field(default_factory=set)
    _pinger: asyncio.Task[None] | None = None

    @property
    def alive(self) -> int:
        return sum(1 for s in self.sessions if s.alive)

    async def open(self, devices: Sequence[Device]) -> float:
        """Open one session per device, `concurrency` at a time; returns the seconds taken."""
        if self._pinger is None:
            self._pinger = asyncio.create_task(self._ping_loop(), name="bench-idle-pinger")
        gate = asyncio.Semaphore(self.concurrency)

        async def one(device: Device) -> None:
            async with gate:
                try:
                    session = await open_session(
                        self.host, self.port, device, subscribe=self.subscribe
                    )
                except SessionRefusedError as exc:
                    self.failures.append(str(exc))
                    return
            self.sessions.append(session)
            watcher = asyncio.create_task(
                self._watch(session), name=f"bench-idle-{device.device_id}"
            )
            self._watchers.add(watcher)

        start = time.monotonic()
        async with asyncio.TaskGroup() as tasks:
            for device in devices:
                tasks.create_task(one(device), name=f"bench-open-{device.device_id}")
        return time.monotonic() - start

    async def _watch(self, session: IdleSession) -> None:
        # Drains PINGRESPs and notices a broker that drops the session.
        with contextlib.suppress(OSError):
            while await session.reader.read(256):
                pass
        session.alive = False

    async def _ping_loop(self) -> None:
        # A real client pings once per keepalive when idle; half of it keeps us well clear
        # of the broker's 1.5 x keepalive limit.
        while True:
            await asyncio.sleep(KEEPALIVE_S / 2)
            for session in self.sessions:
                if session.alive:
                    with contextlib.suppress(OSError):
                        session.writer.write(PINGREQ)

    async def close(self) -> None:
        """DISCONNECT every session (no will), then wait for the broker to hang up."""
        if self._pinger is not None:
            self._pinger.cancel()
        for session in self.sessions:
            if session.alive:
                with contextlib.suppress(OSError):
                    session.writer.write(DISCONNECT)
        # The broker closing first keeps TIME_WAIT off our side's ephemeral ports.
        watchers = list(self._watchers)
        if watchers:
            _, pending = await asyncio.wait(watchers, timeout=CLOSE_TIMEOUT_S)
            for task in pending:
                task.cancel()
        for session in self.sessions:
            session.writer.close()
        await _quietly_closed(s.writer for s in self.sessions)
        self.sessions.clear()
        self._watchers.clear()


async def _quietly_closed(writers: Iterable[asyncio.StreamWriter]) -> None:
    for writer in writers:
        with contextlib.suppress(OSError):
            await writer.wait_closed()
