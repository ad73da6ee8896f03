"""Pure parts of the broker: takeover policy, packet framing and checks, settings."""

from __future__ import annotations

import asyncio
import struct
from uuid import uuid4

import pytest

from ems_access import ROLE_DEFAULTS, Principal, Role
from ems_broker.framing import FramedReader, PacketTooLargeError
from ems_broker.identity import redact
from ems_broker.packet_checks import MalformedPacketError, check_packet
from ems_broker.settings import BrokerSettings
from ems_broker.takeover import Decision, decide
from tests.broker.clients import connect_packet, packet, publish_packet


def who(role: Role, device_id: str | None = None) -> Principal:
    return Principal(uuid4(), role, "t", device_id, ROLE_DEFAULTS[role])


# -- takeover ---------------------------------------------------------------------------------


def test_takeover_by_the_same_token() -> None:
    me = who("viewer")
    assert decide(me, me, old_connected=True, clean_session=True) is Decision.FRESH
    assert decide(me, me, old_connected=True, clean_session=False) is Decision.RESUME
    assert decide(me, me, old_connected=False, clean_session=False) is Decision.RESUME


def test_takeover_of_an_unowned_id() -> None:
    assert decide(who("viewer"), None, old_connected=False, clean_session=False) is Decision.FRESH


def test_a_device_always_gets_its_id_back() -> None:
    dev = who("device", "dev1")
    for old in (who("admin"), who("viewer"), who("device", "dev1")):
        for connected in (True, False):
            decision = decide(dev, old, old_connected=connected, clean_session=False)
            assert decision is not Decision.REFUSE
    # A second token of the same device resumes the device's session (e.g. after rotation).
    other_token = who("device", "dev1")
    assert decide(other_token, dev, old_connected=True, clean_session=False) is Decision.RESUME
    # A squatter's session is never resumed by the device.
    assert decide(dev, who("admin"), old_connected=False, clean_session=False) is Decision.FRESH


def test_nobody_else_takes_a_live_session_or_an_offline_device_session() -> None:
    admin = who("admin")
    assert decide(admin, who("admin"), old_connected=True, clean_session=True) is Decision.REFUSE
    dev = who("device", "dev1")
    assert decide(admin, dev, old_connected=True, clean_session=True) is Decision.REFUSE
    assert decide(admin, dev, old_connected=False, clean_session=True) is Decision.REFUSE


def test_an_offline_session_of_another_token_is_discarded() -> None:
    decision = decide(who("viewer"), who("viewer"), old_connected=False, clean_session=False)
    assert decision is Decision.FRESH


# -- packet checks ----------------------------------------------------------------------------


def body_of(raw: bytes) -> tuple[int, bytes]:
    length_bytes = 1
    while raw[length_bytes] & 0x80:
        length_bytes += 1
    return raw[0], raw[1 + length_bytes :]


def subscribe_packet(*topics: tuple[bytes, int], packet_id: int = 1, flags: int = 2) -> bytes:
    body = struct.pack("!H", packet_id)
    for topic, qos in topics:
        body += struct.pack("!H", len(topic)) + topic + bytes([qos])
    return packet(0x80 | flags, body)


@pytest.mark.parametrize(
    "raw",
    [
        publish_packet("ems/dev1/telemetry", b"{}", qos=1),
        publish_packet("ems/dev1/telemetry", b"", qos=0),
        publish_packet("$SYS/x", b"x"),  # allowed on the wire; the broker drops it later
        subscribe_packet((b"ems/#", 1), (b"ems/+/status", 0)),
        packet(0xA2, struct.pack("!H", 3) + struct.pack("!H", 5) + b"ems/#"),  # UNSUBSCRIBE
        packet(0xC0, b""),  # PINGREQ
        connect_packet("dev1", username="dev1", password="x"),
    ],
)
def test_well_formed_packets_pass(raw: bytes) -> None:
    check_packet(*body_of(raw))


@pytest.mark.parametrize(
    "raw",
    [
        publish_packet("ems/+/telemetry", b"x"),
        publish_packet("ems/#", b"x"),
        publish_packet("", b"x"),
        publish_packet("ems/x", b"", qos=1, packet_id=0),
        packet(0x36, struct.pack("!H", 1) + b"a"),  # QoS 3
        packet(0x30, struct.pack("!H", 2) + b"\xff\xfe"),  # not UTF-8
        packet(0x30, struct.pack("!H", 50) + b"short"),  # topic longer than the packet
        packet(0x32, struct.pack("!H", 1) + b"a"),  # QoS 1 without packet id
        subscribe_packet(),  # no topics
        subscribe_packet((b"ems/#", 3)),
        subscribe_packet((b"", 1)),
        subscribe_packet((b"ems/#", 1), flags=0),
        packet(0x82, struct.pack("!H", 1) + struct.pack("!H", 200) + b"ems/#\x01"),
        packet(0x82, struct.pack("!H", 1) + struct.pack("!H", 5) + b"ems/#"),  # QoS missing
    ],
)
def test_malformed_packets_are_refused(raw: bytes) -> None:
    with pytest.raises(MalformedPacketError):
        check_packet(*body_of(raw))


# -- framing ----------------------------------------------------------------------------------


def framed(data: bytes, max_packet: int = 1024) -> FramedReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return FramedReader(reader, max_packet=max_packet, peer="test")


async def test_framed_reader_serves_packets_in_pieces() -> None:
    first = publish_packet("a/b", b"hello", qos=1, packet_id=7)
    second = packet(0xC0, b"")
    reader = framed(first + second)
    assert await reader.read(1) == first[:1]
    assert await reader.read(1) == first[1:2]
    assert await reader.read(len(first) - 2) == first[2:]
    assert await reader.read(2) == second
    with pytest.raises(asyncio.IncompleteReadError):
        await reader.read(1)


async def test_framed_reader_refuses_oversize_before_reading_the_body() -> None:
    announced = bytes([0x30, 0x80, 0x80, 0x80, 0x01])  # 2 MiB, body never sent
    with pytest.raises(PacketTooLargeError):
        await framed(announced, max_packet=1024 * 1024).read(1)


async def test_framed_reader_refuses_reads_past_the_packet() -> None:
    reader = framed(packet(0xC0, b"") + packet(0xC0, b""))
    await reader.read(1)
    with pytest.raises(MalformedPacketError):
        await reader.read(5)


async def test_framed_reader_refuses_overlong_length() -> None:
    with pytest.raises(MalformedPacketError):
        await framed(b"\x30\xff\xff\xff\xff\x01").read(1)


async def test_framed_reader_eof_mid_packet() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        await framed(publish_packet("a", b"x" * 10)[:-3]).read(1)


# -- misc -------------------------------------------------------------------------------------


def test_redact() -> None:
    assert redact("ems_" + "a" * 43) == "ems_<redacted>"
    assert redact("ops") == "ops"
    assert redact(None) is None


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMS_DATABASE_URL", "postgresql://u:secret@db/ems")
    monkeypatch.setenv("EMS_MQTT_PORT", "1884")
    monkeypatch.setenv("EMS_MQTT_MAX_PACKET", "65536")
    settings = BrokerSettings()
    assert settings.mqtt_port == 1884
    assert settings.mqtt_host == "127.0.0.1"
    assert settings.mqtt_max_packet == 65536
    assert "secret" not in repr(settings)
    monkeypatch.setenv("EMS_MQTT_MAX_PACKET", "10")
    with pytest.raises(ValueError, match="mqtt_max_packet"):
        BrokerSettings()
