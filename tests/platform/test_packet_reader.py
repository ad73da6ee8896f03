"""The ingest's packet reader over a real socket pair: framing across arbitrary reads,
PUBLISH decoding, and everything else passed to paho as paho's own reader would."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from benchmarks.mqtt_wire import remaining_length
from ems_platform.ingest.packet_reader import Delivered, PacketReader, from_paho


def publish(
    topic: bytes, payload: bytes, *, qos: int = 1, mid: int = 7, retain: bool = False
) -> bytes:
    body = (
        len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"") + payload
    )
    header = 0x30 | (qos << 1) | (1 if retain else 0)
    return bytes([header]) + remaining_length(len(body)) + body


@pytest.fixture
def link() -> Iterator[tuple[mqtt.Client, socket.socket, list[Delivered]]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client._sock = ours
    got: list[Delivered] = []
    client.on_message = lambda _c, _u, message: got.append(from_paho(message))
    PacketReader(client, got.append).install()
    yield client, theirs, got
    ours.close()
    theirs.close()


def drain(client: mqtt.Client) -> list[MQTTErrorCode]:
    """loop_read until the reader wants more bytes, as the ingest's reader callback does."""
    codes = []
    for _ in range(10_000):
        code = client._packet_read()
        codes.append(code)
        if code != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return codes
    raise AssertionError("reader never ran dry")


def test_publishes_split_at_every_byte_are_decoded_in_order(
    link: tuple[mqtt.Client, socket.socket, list[Delivered]],
) -> None:
    client, peer, got = link
    big = b"x" * 300  # a two-byte remaining length
    stream = publish(b"ems/d1/telemetry", big, mid=1) + publish(
        b"ems/d1/status", b"{}", qos=0, retain=True
    )
    stream += publish(b"ems/d2/cmd/ack", b'{"ok":1}', mid=65535)
    for byte in stream:
        peer.send(bytes([byte]))
        drain(client)
    assert got == [
        Delivered("ems/d1/telemetry", big, 1, 1, False),
        Delivered("ems/d1/status", b"{}", 0, 0, True),
        Delivered("ems/d2/cmd/ack", b'{"ok":1}', 1, 65535, False),
    ]


def test_many_packets_in_one_read(link: tuple[mqtt.Client, socket.socket, list[Delivered]]) -> None:
    client, peer, got = link
    peer.sendall(b"".join(publish(b"ems/d/telemetry", b"%d" % i, mid=i + 1) for i in range(500)))
    codes = drain(client)
    assert codes[-1] == MQTTErrorCode.MQTT_ERR_AGAIN
    assert [d.payload for d in got] == [b"%d" % i for i in range(500)]
    assert [d.mid for d in got] == list(range(1, 501))


def test_a_topic_that_is_not_utf8_goes_through_paho_and_stays_readable(
    link: tuple[mqtt.Client, socket.socket, list[Delivered]],
) -> None:
    client, peer, got = link
    peer.sendall(publish(b"ems/\xff/telemetry", b"{}", mid=3))
    drain(client)
    assert got == [Delivered("ems/\ufffd/telemetry", b"{}", 1, 3, False)]


def test_other_packets_reach_paho(link: tuple[mqtt.Client, socket.socket, list[Delivered]]) -> None:
    client, peer, got = link
    suback: list[int] = []
    client.on_subscribe = lambda _c, _u, mid, _codes, _p: suback.append(mid)
    peer.sendall(bytes([0x90, 0x03, 0x00, 0x09, 0x01]))  # SUBACK mid 9, granted QoS 1
    drain(client)
    assert suback == [9] and got == []


def test_a_closed_link_and_a_malformed_length_are_reported(
    link: tuple[mqtt.Client, socket.socket, list[Delivered]],
) -> None:
    client, peer, _ = link
    peer.sendall(bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]))
    assert drain(client)[-1] == MQTTErrorCode.MQTT_ERR_PROTOCOL
    peer.close()
    other, closed = socket.socketpair()
    other.setblocking(False)
    client._sock = other
    reader = PacketReader(client, lambda _d: None)
    reader.install()
    closed.close()
    assert client._packet_read() == MQTTErrorCode.MQTT_ERR_CONN_LOST
    other.close()


def _buffer(client: mqtt.Client, peer: socket.socket, stream: bytes) -> PacketReader:
    """A reader that has read ``stream`` from the socket: its first packet handled by
    ``__call__`` (as ``loop_read`` does), the rest left in its buffer."""
    reader: PacketReader = client._packet_read  # type: ignore[assignment]
    peer.sendall(stream)
    assert client._packet_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
    return reader


def test_take_publishes_decodes_what_is_buffered_up_to_the_limit(
    link: tuple[mqtt.Client, socket.socket, list[Delivered]],
) -> None:
    client, peer, got = link
    stream = b"".join(publish(b"ems/d/telemetry", b"%d" % i, mid=i + 1) for i in range(50))
    reader = _buffer(client, peer, stream)
    assert [d.mid for d in got] == [1]
    first = reader.take_publishes(20)
    assert [d.mid for d in first] == list(range(2, 22))
    assert first[0] == Delivered("ems/d/telemetry", b"1", 1, 2, False)
    rest = reader.take_publishes(1000)
    assert [d.payload for d in rest] == [b"%d" % i for i in range(21, 50)]
    assert reader.take_publishes(1000) == [] and not reader.has_packet()
    # Nothing buffered: the next loop_read reads the socket again.
    assert client._packet_read() == MQTTErrorCode.MQTT_ERR_AGAIN


def test_take_publishes_stops_where_paho_or_more_bytes_are_needed(
    link: tuple[mqtt.Client, socket.socket, list[Delivered]],
) -> None:
    client, peer, got = link
    suback: list[int] = []
    client.on_subscribe = lambda _c, _u, mid, _codes, _p: suback.append(mid)
    whole = publish(b"ems/d/telemetry", b"x" * 300, mid=4)
    stream = (
        publish(b"ems/d/telemetry", b"a", mid=1)
        + publish(b"ems/d/status", b"{}", qos=0, retain=True)
        + bytes([0x90, 0x03, 0x00, 0x09, 0x01])  # SUBACK: paho's
        + publish(b"ems/\xff/telemetry", b"{}", mid=2)  # not UTF-8: paho's
        + publish(b"ems/d/telemetry", b"b", mid=3)
        + whole[:100]  # incomplete
    )
    reader = _buffer(client, peer, stream)
    assert reader.take_publishes(100) == [Delivered("ems/d/status", b"{}", 0, 0, True)]
    assert reader.take_publishes(100) == []  # the SUBACK is next
    assert client._packet_read() == MQTTErrorCode.MQTT_ERR_SUCCESS and suback == [9]
    assert reader.take_publishes(100) == []  # the topic that is not UTF-8
    assert client._packet_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert got[-1] == Delivered("ems/\ufffd/telemetry", b"{}", 1, 2, False)
    assert [d.mid for d in reader.take_publishes(100)] == [3]
    assert reader.take_publishes(100) == [] and not reader.has_packet()
    peer.sendall(whole[100:])
    assert client._packet_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert got[-1] == Delivered("ems/d/telemetry", b"x" * 300, 1, 4, False)


def test_take_publishes_leaves_a_malformed_length_to_be_reported(
    link: tuple[mqtt.Client, socket.socket, list[Delivered]],
) -> None:
    client, peer, got = link
    stream = publish(b"ems/d/telemetry", b"a", mid=1) + bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
    reader = _buffer(client, peer, stream)
    assert reader.take_publishes(100) == []
    assert client._packet_read() == MQTTErrorCode.MQTT_ERR_PROTOCOL
    assert [d.mid for d in got] == [1]
