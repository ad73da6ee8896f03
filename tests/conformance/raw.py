"""Raw MQTT 3.1.1 over a socket, for what a well-behaved client library will not do.

Going silent without closing the socket, pipelining QoS 1 publishes and vanishing right
after their PUBACKs, or holding PUBACKs back: each is a behaviour a real device or a slow
subscriber shows, and each needs the bytes under the test's control.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass

from tests.broker.clients import RawConnection, connect_packet, packet, publish_packet

__all__ = [
    "Packet",
    "RawClient",
    "connect_packet",
    "packet",
    "publish_packet",
    "subscribe_packet",
]

CONNACK, PUBLISH, PUBACK, SUBACK = 2, 3, 4, 9


def subscribe_packet(topic_filter: str, *, qos: int = 1, packet_id: int = 1) -> bytes:
    data = topic_filter.encode()
    body = struct.pack("!H", packet_id) + struct.pack("!H", len(data)) + data + bytes([qos])
    return packet(0x82, body)


def puback_packet(packet_id: int) -> bytes:
    return packet(0x40, struct.pack("!H", packet_id))


@dataclass(frozen=True)
class Packet:
    kind: int
    flags: int
    body: bytes

    @property
    def dup(self) -> bool:
        return bool(self.flags & 0x08)

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 0x03

    @property
    def retain(self) -> bool:
        return bool(self.flags & 0x01)

    def publish(self) -> tuple[str, int | None, bytes]:
        """Topic, packet id (QoS > 0) and payload of a PUBLISH."""
        (length,) = struct.unpack("!H", self.body[:2])
        topic = self.body[2 : 2 + length].decode()
        rest = self.body[2 + length :]
        if self.qos:
            (packet_id,) = struct.unpack("!H", rest[:2])
            return topic, packet_id, rest[2:]
        return topic, None, rest

    def packet_id(self) -> int:
        (packet_id,) = struct.unpack("!H", self.body[:2])
        return int(packet_id)


class RawClient(RawConnection):
    """A bare TCP connection that can also read whole packets."""

    def read_packet(self) -> Packet:
        first = self.recv_exactly(1)[0]
        length, shift = 0, 0
        while True:
            digit = self.recv_exactly(1)[0]
            length |= (digit & 0x7F) << shift
            shift += 7
            if not digit & 0x80:
                break
        body = self.recv_exactly(length) if length else b""
        return Packet(first >> 4, first & 0x0F, body)

    async def next_packet(self) -> Packet:
        return await asyncio.to_thread(self.read_packet)

    async def expect(self, kind: int) -> Packet:
        """The next packet, which must be of ``kind``."""
        received = await self.next_packet()
        assert received.kind == kind, received
        return received

    async def connect(self, client_id: str, **kwargs: object) -> int:
        """Send CONNECT and return the CONNACK code (session-present flag in ``.session``)."""
        self.send(connect_packet(client_id, **kwargs))  # type: ignore[arg-type]
        connack = await self.expect(CONNACK)
        self.session_present = bool(connack.body[0] & 0x01)
        return connack.body[1]

    async def is_closed_by_broker(self) -> bool:
        """Drain until EOF; True once the broker has closed the connection."""
        await self.wait_closed()
        return True
