"""The hand-written MQTT 3.1.1 encoding of the ingest load generator, byte by byte."""

from __future__ import annotations

import pytest

from benchmarks.mqtt_wire import (
    MAX_PACKET_ID,
    PINGREQ,
    InboundReader,
    PacketIds,
    ProtocolError,
    PublishHeads,
    connack_code,
    connect_packet,
    publish_packet,
    remaining_length,
)


def decode_remaining_length(data: bytes) -> tuple[int, int]:
    """Value and size, as MQTT 3.1.1 section 2.2.3 decodes it."""
    value, multiplier = 0, 1
    for size, byte in enumerate(data, start=1):
        value += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return value, size
        multiplier *= 128
    raise AssertionError("unterminated remaining length")


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_remaining_length_at_every_boundary(n: int, encoded: bytes) -> None:
    assert remaining_length(n) == encoded
    assert decode_remaining_length(encoded) == (n, len(encoded))


@pytest.mark.parametrize("n", [-1, 268_435_456])
def test_remaining_length_out_of_range(n: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        remaining_length(n)


def test_connect_packet_bytes() -> None:
    packet = connect_packet("c1", "u", "pw", 60)
    body = (
        b"\x00\x04MQTT"  # protocol name
        b"\x04"  # level 4 = 3.1.1
        b"\xc2"  # user name, password, clean session
        b"\x00\x3c"  # keepalive 60
        b"\x00\x02c1"
        b"\x00\x01u"
        b"\x00\x02pw"
    )
    assert packet == b"\x10" + bytes([len(body)]) + body


def test_publish_packet_bytes() -> None:
    assert publish_packet("a/b", 0x1234, b"hi") == (
        b"\x32"  # PUBLISH, QoS 1, no DUP, no retain
        b"\x09"  # 2 + 3 topic + 2 packet id + 2 payload
        b"\x00\x03a/b"
        b"\x12\x34"
        b"hi"
    )


def test_publish_packet_with_a_two_byte_remaining_length() -> None:
    payload = b"x" * 600
    packet = publish_packet("ems/d1/telemetry", 1, payload)
    length, size = decode_remaining_length(packet[1:])
    assert size == 2
    assert length == len(packet) - 1 - size == 2 + 16 + 2 + 600
    assert packet.endswith(b"\x00\x10ems/d1/telemetry\x00\x01" + payload)


def test_publish_heads_match_whole_packets() -> None:
    topics = ["ems/a/telemetry", "ems/bb/telemetry"]
    heads = PublishHeads(topics)
    for payload in (b"{}", b"y" * 200):
        for topic, head in zip(topics, heads(len(payload)), strict=True):
            assert head + b"\x00\x07" + payload == publish_packet(topic, 7, payload)
    assert heads(2) is heads(2)


def test_connack_codes() -> None:
    assert connack_code(b"\x20\x02\x00\x00") == 0
    assert connack_code(b"\x20\x02\x00\x05") == 5
    with pytest.raises(ProtocolError, match="expected CONNACK"):
        connack_code(b"\x40\x02\x00\x01")


def test_packet_ids_wrap_and_skip_ids_still_in_flight() -> None:
    ids = PacketIds()
    reader = InboundReader(ids)
    first = [ids.take() for _ in range(3)]
    assert first == [1, 2, 3]
    reader.feed(b"\x40\x02\x00\x02\x40\x02\x00\x03")  # 1 stays in flight
    taken = [ids.take() for _ in range(MAX_PACKET_ID - 3)]
    assert taken[0] == 4 and taken[-1] == MAX_PACKET_ID
    # Wrapped: 1 is still unacknowledged, so 2 comes next; 0 is never used.
    assert ids.take() == 2
    assert ids.in_flight == MAX_PACKET_ID - 1
    assert ids.take() == 3
    with pytest.raises(ProtocolError, match="all 65,535"):
        ids.take()


def test_pubacks_and_pingresps_cut_at_every_byte() -> None:
    ids = PacketIds()
    reader = InboundReader(ids)
    for _ in range(300):
        ids.take()
    stream = b"".join(b"\x40\x02" + i.to_bytes(2, "big") for i in range(1, 151))
    stream += b"\xd0\x00" + b"".join(b"\x40\x02" + i.to_bytes(2, "big") for i in range(151, 301))
    acked = sum(reader.feed(stream[at : at + 1]) for at in range(len(stream)))
    assert acked == reader.acked == 300
    assert reader.pingresps == 1
    assert ids.in_flight == 0
    assert not any(ids.pending)


def test_pubacks_in_uneven_chunks() -> None:
    ids = PacketIds()
    reader = InboundReader(ids)
    for _ in range(1000):
        ids.take()
    stream = b"".join(b"\x40\x02" + i.to_bytes(2, "big") for i in range(1000, 0, -1))
    at, acked, sizes = 0, 0, [1, 3, 5, 7, 4, 2, 9, 1000]
    while at < len(stream):
        size = sizes[at % len(sizes)]
        acked += reader.feed(stream[at : at + size])
        at += size
    assert acked == 1000
    assert ids.in_flight == 0


def test_puback_for_an_id_not_in_flight() -> None:
    ids = PacketIds()
    ids.take()
    with pytest.raises(ProtocolError, match="packet id 2, not in flight"):
        InboundReader(ids).feed(b"\x40\x02\x00\x02")


@pytest.mark.parametrize(
    "data",
    [
        b"\x30\x05\x00\x01a",  # a PUBLISH: we subscribed to nothing
        b"\x20\x02\x00\x00",  # a second CONNACK
        b"\x40\x03\x00\x01\x00",  # a PUBACK with the wrong length
        PINGREQ,  # the broker does not ping a client
    ],
)
def test_anything_else_from_the_broker_is_an_error(data: bytes) -> None:
    ids = PacketIds()
    ids.take()
    with pytest.raises(ProtocolError, match="unexpected packet"):
        InboundReader(ids).feed(data)
