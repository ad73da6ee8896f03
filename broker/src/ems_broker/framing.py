"""A reader adapter that frames MQTT packets itself and refuses oversized ones.

amqtt 0.12.1 has no maximum packet size: it believes the remaining-length field and reads
up to 256 MiB into memory per packet. This adapter reads each packet's fixed header from the
socket, checks the announced size before reading the body, and then serves amqtt's parser
from the buffered packet. A parser that tries to read past the packet it was given (inner
lengths that disagree with the remaining length) gets MalformedPacketError instead of bytes
of the next packet, and packets amqtt would only half-read are refused up front (see
packet_checks). These errors make amqtt's reader loop drop the connection.
"""

from __future__ import annotations

import asyncio
import logging

from amqtt.adapters import ReaderAdapter

from ems_broker.packet_checks import MalformedPacketError, check_packet

logger = logging.getLogger(__name__)

_MAX_LENGTH_BYTES = 4


class PacketTooLargeError(MalformedPacketError):
    """A packet announced more bytes than the broker accepts."""


class FramedReader(ReaderAdapter):  # type: ignore[misc]
    def __init__(self, reader: asyncio.StreamReader, *, max_packet: int, peer: str) -> None:
        self._reader = reader
        self._max_packet = max_packet
        self._peer = peer
        self._packet = b""
        self._pos = 0

    async def _next_packet(self) -> None:
        header = bytearray(await self._reader.readexactly(1))
        length = 0
        for index in range(_MAX_LENGTH_BYTES):
            byte = (await self._reader.readexactly(1))[0]
            header.append(byte)
            length += (byte & 0x7F) << (7 * index)
            if not byte & 0x80:
                break
        else:
            raise MalformedPacketError(f"remaining length longer than 4 bytes from {self._peer}")
        total = len(header) + length
        if total > self._max_packet:
            logger.warning(
                "refusing a %d-byte MQTT packet from %s (limit %d): closing the connection",
                total,
                self._peer,
                self._max_packet,
            )
            raise PacketTooLargeError(f"{total}-byte packet exceeds the {self._max_packet} limit")
        body = await self._reader.readexactly(length) if length else b""
        try:
            check_packet(header[0], body)
        except MalformedPacketError as exc:
            logger.warning(
                "malformed MQTT packet from %s (%s): closing the connection", self._peer, exc
            )
            raise
        self._packet = bytes(header) + body
        self._pos = 0

    async def read(self, n: int = -1) -> bytes:
        if self._pos >= len(self._packet):
            await self._next_packet()
        available = len(self._packet) - self._pos
        if n < 0:
            n = available
        if n > available:
            self._packet, self._pos = b"", 0
            raise MalformedPacketError(f"packet from {self._peer} is shorter than its fields")
        data = self._packet[self._pos : self._pos + n]
        self._pos += n
        return data

    def feed_eof(self) -> None:
        self._reader.feed_eof()
