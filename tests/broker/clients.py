"""Test helpers: a paho-mqtt client with awaitable steps, and raw MQTT packet builders."""

from __future__ import annotations

import asyncio
import queue
import socket
import struct
import threading
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.mqtt_wire import remaining_length, utf8_field

WAIT_S = 30.0


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    qos: int
    retain: bool


class Client:
    """paho-mqtt (MQTT 3.1.1) whose waits are bounded and do not block the event loop."""

    def __init__(
        self,
        port: int,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        clean_session: bool = True,
        keepalive: int = 60,
        will: tuple[str, bytes, int, bool] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.host, self.port = host, port
        self.keepalive = keepalive
        self.paho = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv311,
            clean_session=clean_session,
            reconnect_on_failure=False,
        )
        if username is not None or password is not None:
            self.paho.username_pw_set(username, password)
        if will is not None:
            self.paho.will_set(*will)
        self.messages: queue.Queue[Received] = queue.Queue()
        self.connack: Any = None
        self.session_present: bool | None = None
        self._connected = threading.Event()
        self.disconnected = threading.Event()
        self._subacks: dict[int, list[int]] = {}
        self._suback_event = threading.Condition()
        self.paho.on_connect = self._on_connect
        self.paho.on_disconnect = self._on_disconnect
        self.paho.on_message = self._on_message
        self.paho.on_subscribe = self._on_subscribe

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, _p: Any) -> None:
        self.connack = reason
        self.session_present = bool(getattr(flags, "session_present", False))
        self._connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, _r: Any, _p: Any) -> None:
        self.disconnected.set()
        self._connected.set()

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        self.messages.put(
            Received(message.topic, bytes(message.payload), message.qos, bool(message.retain))
        )

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: Any, _p: Any) -> None:
        with self._suback_event:
            self._subacks[mid] = [int(getattr(code, "value", code)) for code in codes]
            self._suback_event.notify_all()

    async def connect(self) -> bool:
        """Connect and wait for CONNACK; True if accepted."""
        self.paho.connect(self.host, self.port, keepalive=self.keepalive)
        self.paho.loop_start()
        if not await asyncio.to_thread(self._connected.wait, WAIT_S):
            raise TimeoutError("no CONNACK")
        return self.connack is not None and not self.connack.is_failure

    async def subscribe(self, topic_filter: str, qos: int = 1) -> int:
        """Subscribe and return the granted QoS (128 = refused)."""
        _, mid = self.paho.subscribe(topic_filter, qos)
        assert mid is not None

        def wait() -> list[int]:
            with self._suback_event:
                if not self._suback_event.wait_for(lambda: mid in self._subacks, WAIT_S):
                    raise TimeoutError("no SUBACK")
                return self._subacks.pop(mid)

        return (await asyncio.to_thread(wait))[0]

    async def publish(
        self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False
    ) -> None:
        """Publish; for QoS 1 wait for the PUBACK."""
        info = self.paho.publish(topic, payload, qos=qos, retain=retain)
        if qos:
            await asyncio.to_thread(info.wait_for_publish, WAIT_S)
            if not info.is_published():
                raise TimeoutError(f"no PUBACK for {topic}")

    async def next_message(self) -> Received:
        return await asyncio.to_thread(self.messages.get, True, WAIT_S)

    async def wait_for(self, topic: str) -> list[Received]:
        """Everything received up to and including the first message on ``topic``."""
        seen: list[Received] = []
        while True:
            message = await self.next_message()
            seen.append(message)
            if message.topic == topic:
                return seen

    async def wait_disconnected(self) -> None:
        if not await asyncio.to_thread(self.disconnected.wait, WAIT_S):
            raise TimeoutError("still connected")

    def close(self) -> None:
        self.paho.disconnect()
        self.paho.loop_stop()


# -- raw packets, for what a well-behaved client library will not send ---------------------


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + remaining_length(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    keepalive: int = 60,
    will: tuple[str, bytes, int, bool] | None = None,
    clean_session: bool = True,
) -> bytes:
    flags = 0x02 if clean_session else 0
    payload = utf8_field(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += utf8_field(topic) + utf8_field(message)
    if username is not None:
        flags |= 0x80
        payload += utf8_field(username)
    if password is not None:
        flags |= 0x40
        payload += utf8_field(password)
    header = utf8_field("MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive)
    return packet(0x10, header + payload)


def publish_packet(topic: str, payload: bytes, *, qos: int = 0, packet_id: int = 1) -> bytes:
    body = utf8_field(topic) + (struct.pack("!H", packet_id) if qos else b"") + payload
    return packet(0x30 | (qos << 1), body)


class RawConnection:
    """A bare TCP connection to the broker."""

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=WAIT_S)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed by the broker")
            data += chunk
        return data

    def connack_code(self) -> int:
        header = self.recv_exactly(4)
        assert header[0] == 0x20, header
        return header[3]

    async def wait_closed(self) -> None:
        """Read (and discard) until the broker closes the connection."""

        def drain() -> None:
            while True:
                try:
                    if not self.sock.recv(65536):
                        return
                except ConnectionResetError:
                    return

        await asyncio.to_thread(drain)

    def close(self) -> None:
        self.sock.close()
