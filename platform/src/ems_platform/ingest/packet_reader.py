"""paho's packet reader, replaced: whole packets from one buffer, PUBLISH decoded in place.

paho 2.x reads a packet with three or four ``recv`` calls (command byte, each byte of the
remaining length, then the body), keeps its progress in a dict, and builds an ``MQTTMessage``
and runs its callback machinery for every PUBLISH. At thousands of messages a second that
was the largest single cost of the ingest. This reader fills a buffer with one ``recv`` of up
to ``READ_CHUNK`` bytes, cuts whole packets out of it, and decodes an MQTT 3.1.1 PUBLISH of
QoS 0 or 1 itself, handing ``Delivered`` straight to the consumer. Every other packet
(CONNACK, SUBACK, PINGRESP, QoS 2, MQTT 5, a topic that is not UTF-8...) is given to paho's
own ``_packet_handle`` exactly as paho's reader would have, so the protocol state machine
stays paho's.

Installed by replacing the ``_packet_read`` attribute of one paho client (pinned ``<3``);
``loop_read`` calls it once per packet. ``take_publishes`` then decodes the PUBLISHes left
in the buffer in one call, so a read's hundreds of messages cost one ``loop_read``, not one
each (``benchmarks/mqtt_read_bench.py``: about half the CPU per message of the read path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

#: One ``recv`` reads up to this much: several hundred telemetry messages per syscall.
READ_CHUNK = 256 * 1024
_PUBLISH = mqtt.PUBLISH
_MAX_LENGTH_BYTES = 4


class Delivered(NamedTuple):
    """A PUBLISH as the broker delivered it."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool


#: ``tuple.__new__(Delivered, (...))`` builds the same named tuple as ``Delivered(...)``
#: without the Python-level ``__new__`` NamedTuple generates: 0.15 against 0.4 µs, once per
#: message on the hot path.
_new = tuple.__new__


class PacketReader:
    def __init__(self, client: mqtt.Client, deliver: Callable[[Delivered], None]) -> None:
        self._client = client
        self._recv: Callable[[int], bytes] = client._sock_recv
        self._deliver = deliver
        self._data = b""
        self._pos = 0
        self._v5 = client._protocol == mqtt.MQTTv5

    def install(self) -> None:
        # An instance attribute shadows paho's method; loop_read looks it up per packet.
        setattr(self._client, "_packet_read", self)  # noqa: B010

    def reset(self) -> None:
        """A new socket: nothing read from the old one means anything."""
        self._data = b""
        self._pos = 0

    def has_packet(self) -> bool:
        """Whether a whole packet is already buffered (no socket event will announce it)."""
        try:
            return self._frame() is not None
        except _Malformed:
            return True  # the next read reports it

    def _frame(self) -> tuple[int, int] | None:
        """(start of body, end of packet) of the next buffered packet, if it is complete."""
        return _frame_at(self._data, self._pos)

    def _fill(self) -> MQTTErrorCode | None:
        """Read more from the socket; an error code if nothing more can be read now."""
        try:
            chunk = self._recv(READ_CHUNK)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not chunk:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        rest = self._data[self._pos :]
        self._data = rest + chunk if rest else chunk
        self._pos = 0
        client: Any = self._client
        with client._msgtime_mutex:
            client._last_bytes_received = mqtt.time_func()
        return None

    def __call__(self) -> MQTTErrorCode:
        try:
            frame = self._frame()
            while frame is None:
                error = self._fill()
                if error is not None:
                    return error
                frame = self._frame()
        except _Malformed:
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        start, end = frame
        data = self._data
        header = data[self._pos]
        self._pos = end
        if header & 0xF0 == _PUBLISH and not header & 0x04 and not self._v5:
            delivered = _publish(header, data, start, end)
            if delivered is not None:
                self._deliver(delivered)
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return self._paho_handles(header, data[start:end], end - start)

    def take_publishes(self, limit: int) -> list[Delivered]:
        """Up to ``limit`` PUBLISHes already buffered, decoded, in order, without a socket
        read; it stops at the first packet that is incomplete or that it would hand to paho
        (``__call__`` deals with that one, and reports a malformed length).

        What ``__call__`` does per packet, for a whole read at once: one call decodes the
        hundreds of messages a ``recv`` brought instead of a ``loop_read`` for each.
        """
        taken: list[Delivered] = []
        if self._v5:
            return taken
        data, pos = self._data, self._pos
        size = len(data)
        count = 0
        try:
            while count < limit and pos < size:
                header = data[pos]
                if header & 0xF0 != _PUBLISH or header & 0x04:
                    break
                frame = _frame_at(data, pos)
                if frame is None:
                    break
                delivered = _publish(header, data, *frame)
                if delivered is None:
                    break
                taken.append(delivered)
                count += 1
                pos = frame[1]
        except _Malformed:
            pass
        self._pos = pos
        return taken

    def _paho_handles(self, header: int, body: bytes, length: int) -> MQTTErrorCode:
        """The packet as paho's own reader would have passed it on."""
        client: Any = self._client
        client._in_packet = {
            "command": header,
            "have_remaining": 1,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": length,
            "packet": body,
            "to_process": 0,
            "pos": 0,
        }
        try:
            rc: MQTTErrorCode = client._packet_handle()
        except MalformedPacket:
            rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
        client._in_packet = {
            "command": 0,
            "have_remaining": 0,
            "remaining_count": [],
            "remaining_mult": 1,
            "remaining_length": 0,
            "packet": bytearray(b""),
            "to_process": 0,
            "pos": 0,
        }
        return rc


class _Malformed(Exception):
    """A remaining length of more than four bytes: not MQTT."""


def _frame_at(data: bytes, pos: int) -> tuple[int, int] | None:
    """(start of body, end of packet) of the packet at ``pos``, if ``data`` holds all of it."""
    size = len(data)
    length = 0
    shift = 0
    at = pos + 1
    while True:
        if at >= size:
            return None
        byte = data[at]
        length += (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            break
        shift += 7
        if at - pos - 1 >= _MAX_LENGTH_BYTES:
            raise _Malformed
    return (at, at + length) if at + length <= size else None


def _publish(header: int, data: bytes, start: int, end: int) -> Delivered | None:
    """The MQTT 3.1.1 PUBLISH of QoS 0 or 1 whose body is ``data[start:end]``; None to let
    paho handle (and judge) it."""
    qos = (header >> 1) & 0x03
    if end - start < 2:
        return None
    topic_end = start + 2 + int.from_bytes(data[start : start + 2], "big")
    payload_at = topic_end + (2 if qos else 0)
    if payload_at > end:
        return None
    try:
        topic = data[start + 2 : topic_end].decode("utf-8")
    except UnicodeDecodeError:
        return None
    mid = int.from_bytes(data[topic_end:payload_at], "big") if qos else 0
    return _new(Delivered, (topic, data[payload_at:end], qos, mid, bool(header & 0x01)))


def from_paho(message: mqtt.MQTTMessage) -> Delivered:
    """A message paho decoded itself (the cases ``PacketReader`` passes on). A topic that is
    not UTF-8 keeps a readable form, so the judge can quarantine it as an invalid topic."""
    topic = bytes(message._topic).decode("utf-8", "replace")
    return Delivered(topic, bytes(message.payload), message.qos, message.mid, bool(message.retain))
