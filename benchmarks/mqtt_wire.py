"""Just enough MQTT 3.1.1 to publish at QoS 1 from one socket with next to no CPU per message.

paho-mqtt spends about 150 µs of Python per QoS 1 message (a ``MQTTMessageInfo``, a
packet dict, a lock, a callback per PUBACK). A load generator that speaks for a whole
fleet only needs CONNECT, QoS 1 PUBLISH, PUBACK and keepalive pings, and most of each
PUBLISH never changes: the fixed header and topic depend only on the device (and the
payload's length), so they are built once and a message becomes three byte strings to
join. Everything here is pure encoding/decoding; the socket belongs to the caller.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
MAX_PACKET_ID = 0xFFFF
MAX_REMAINING_LENGTH = 268_435_455
_CONNECT, _CONNACK, _PUBLISH_QOS1 = 0x10, 0x20, 0x32
_PUBACK, _PINGRESP = 0x40, 0xD0
# Flags of a CONNECT with a user name, a password and clean_session = 1.
_USER_PASSWORD_CLEAN = 0x80 | 0x40 | 0x02
CONNACK_REASONS = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}
#: ``PACKET_ID_BYTES[i]`` is packet id ``i`` on the wire; index instead of ``to_bytes``.
PACKET_ID_BYTES: tuple[bytes, ...] = tuple(i.to_bytes(2, "big") for i in range(MAX_PACKET_ID + 1))


class ProtocolError(ValueError):
    """The broker sent something a QoS 1 publisher does not expect."""


def remaining_length(n: int) -> bytes:
    """The variable-length "remaining length" of a fixed header (1-4 bytes)."""
    if not 0 <= n <= MAX_REMAINING_LENGTH:
        raise ValueError(f"remaining length {n} out of range")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8_field(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(raw)) + raw


def connect_packet(client_id: str, username: str, password: str, keepalive: int) -> bytes:
    """CONNECT with clean_session = 1, a user name and a password, no will."""
    body = (
        utf8_field("MQTT")
        + bytes([4, _USER_PASSWORD_CLEAN])
        + struct.pack("!H", keepalive)
        + utf8_field(client_id)
        + utf8_field(username)
        + utf8_field(password)
    )
    return bytes([_CONNECT]) + remaining_length(len(body)) + body


def connack_code(packet: bytes) -> int:
    """The return code of a 4-byte CONNACK (0 = accepted)."""
    if len(packet) != 4 or packet[0] != _CONNACK or packet[1] != 2:
        raise ProtocolError(f"expected CONNACK, got {packet.hex(' ')}")
    return packet[3]


def publish_head(topic: str, payload_length: int) -> bytes:
    """Everything of a QoS 1 PUBLISH before its packet id: fixed header and topic."""
    topic_field = utf8_field(topic)
    rest = len(topic_field) + 2 + payload_length
    return bytes([_PUBLISH_QOS1]) + remaining_length(rest) + topic_field


def publish_packet(topic: str, packet_id: int, payload: bytes) -> bytes:
    """One QoS 1 PUBLISH (no DUP, no retain)."""
    return publish_head(topic, len(payload)) + PACKET_ID_BYTES[packet_id] + payload


class PublishHeads:
    """Per-topic PUBLISH heads, built once per payload length (which rarely changes)."""

    def __init__(self, topics: Sequence[str]) -> None:
        self._topics = list(topics)
        self._by_length: dict[int, list[bytes]] = {}

    def __call__(self, payload_length: int) -> list[bytes]:
        heads = self._by_length.get(payload_length)
        if heads is None:
            heads = [publish_head(t, payload_length) for t in self._topics]
            self._by_length[payload_length] = heads
        return heads


class PacketIds:
    """Packet ids 1..65535 in turn, wrapping, skipping any id still awaiting its PUBACK."""

    def __init__(self) -> None:
        self.pending = bytearray(MAX_PACKET_ID + 1)  # 1 = in flight; index 0 is never used
        self.in_flight = 0
        self._next = 1

    def take(self) -> int:
        if self.in_flight >= MAX_PACKET_ID:
            raise ProtocolError("all 65,535 packet ids are awaiting a PUBACK")
        pending, packet_id = self.pending, self._next
        while pending[packet_id]:
            packet_id = packet_id % MAX_PACKET_ID + 1
        pending[packet_id] = 1
        self.in_flight += 1
        self._next = packet_id % MAX_PACKET_ID + 1
        return packet_id


class InboundReader:
    """Parses what the broker sends a publisher: PUBACKs and PINGRESPs, from a byte stream
    cut anywhere (a packet may span reads). Anything else is a ``ProtocolError``."""

    def __init__(self, ids: PacketIds) -> None:
        self.ids = ids
        self.acked = 0
        self.pingresps = 0
        self._buffer = bytearray()

    def feed(self, data: bytes) -> int:
        """Consume ``data``; returns how many PUBACKs it completed."""
        buffer = self._buffer
        buffer += data
        pending = self.ids.pending
        end, at, acked = len(buffer), 0, 0
        try:
            while end - at >= 2:
                kind = buffer[at]
                if kind == _PUBACK and buffer[at + 1] == 2:
                    if end - at < 4:
                        break
                    packet_id = buffer[at + 2] << 8 | buffer[at + 3]
                    if not pending[packet_id]:
                        raise ProtocolError(f"PUBACK for packet id {packet_id}, not in flight")
                    pending[packet_id] = 0
                    acked += 1
                    at += 4
                elif kind == _PINGRESP and buffer[at + 1] == 0:
                    self.pingresps += 1
                    at += 2
                else:
                    raise ProtocolError(
                        f"unexpected packet from the broker: type {kind >> 4}, "
                        f"bytes {bytes(buffer[at : at + 8]).hex(' ')}"
                    )
        finally:
            del buffer[:at]
            self.ids.in_flight -= acked
            self.acked += acked
        return acked
