"""Checks on a whole buffered packet before amqtt parses it.

amqtt 0.12.1 reacts to some malformed packets by discarding the packet *half-read*: a
PUBLISH topic with a wildcard raises MQTTError after the topic, and its reader loop then
carries on with the payload bytes as if they were the next packet. Invalid UTF-8 becomes a
topic like ``b'\\xff'`` and throws its length bookkeeping off. MQTT 3.1.1 (4.8) says a
malformed packet closes the connection; these checks make sure amqtt is only ever handed
packets it parses completely, and everything else closes the connection.
"""

from __future__ import annotations

import struct

PUBLISH = 3
SUBSCRIBE = 8
UNSUBSCRIBE = 10


class MalformedPacketError(Exception):
    """The byte stream does not frame into valid MQTT packets."""


def _string(body: bytes, pos: int, what: str) -> tuple[str, int]:
    if pos + 2 > len(body):
        raise MalformedPacketError(f"{what}: length prefix past the end of the packet")
    (length,) = struct.unpack_from("!H", body, pos)
    start, end = pos + 2, pos + 2 + length
    if end > len(body):
        raise MalformedPacketError(f"{what}: string longer than the packet")
    try:
        text = body[start:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedPacketError(f"{what}: not UTF-8") from exc
    if "\0" in text:
        raise MalformedPacketError(f"{what}: contains NUL")
    return text, end


def _packet_id(body: bytes, pos: int, what: str) -> int:
    if pos + 2 > len(body):
        raise MalformedPacketError(f"{what}: packet id missing")
    (packet_id,) = struct.unpack_from("!H", body, pos)
    if packet_id == 0:
        raise MalformedPacketError(f"{what}: packet id 0")
    return pos + 2


def _check_publish(flags: int, body: bytes) -> None:
    qos = (flags >> 1) & 0x03
    if qos == 3:
        raise MalformedPacketError("PUBLISH with QoS 3")
    topic, pos = _string(body, 0, "PUBLISH topic")
    if not topic or "+" in topic or "#" in topic:
        raise MalformedPacketError("PUBLISH topic empty or with wildcards")
    if qos:
        _packet_id(body, pos, "PUBLISH")


def _check_topic_list(body: bytes, *, with_qos: bool, what: str) -> None:
    pos = _packet_id(body, 0, what)
    if pos == len(body):
        raise MalformedPacketError(f"{what} without topics")
    while pos < len(body):
        topic, pos = _string(body, pos, f"{what} topic")
        if not topic:
            raise MalformedPacketError(f"{what} with an empty topic filter")
        if with_qos:
            if pos >= len(body) or body[pos] > 2:
                raise MalformedPacketError(f"{what}: missing or invalid requested QoS")
            pos += 1


def check_packet(first_byte: int, body: bytes) -> None:
    """Raise MalformedPacketError unless amqtt can consume this packet whole."""
    packet_type, flags = first_byte >> 4, first_byte & 0x0F
    if packet_type == PUBLISH:
        _check_publish(flags, body)
    elif packet_type in (SUBSCRIBE, UNSUBSCRIBE):
        if flags != 0x02:
            raise MalformedPacketError("SUBSCRIBE/UNSUBSCRIBE with reserved flags != 2")
        _check_topic_list(body, with_qos=packet_type == SUBSCRIBE, what="SUBSCRIBE")
