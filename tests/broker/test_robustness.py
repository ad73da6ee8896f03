"""Malformed and hostile input, keepalive, and message loss around disconnects."""

from __future__ import annotations

import struct
from collections.abc import Callable

from tests.broker.clients import (
    Client,
    RawConnection,
    connect_packet,
    packet,
    publish_packet,
)
from tests.broker.conftest import MakeClient, MakeToken
from tests.support.ems_broker import EmsBrokerProcess

MIB = 1024 * 1024


async def assert_still_serving(port: int, token: str) -> None:
    client = Client(port, "health-check", username="ops", password=token)
    try:
        assert await client.connect()
        assert await client.subscribe("ems/health") == 1
        await client.publish("ems/health", b"ok")
        assert (await client.next_message()).payload == b"ok"
    finally:
        client.close()


async def test_garbage_before_connect(make_token: MakeToken, ems_broker: EmsBrokerProcess) -> None:
    admin = await make_token("admin")
    hostile = [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x10\xff\xff\xff\xff\xff",  # remaining length longer than four bytes
        b"\x00\x00",  # reserved packet type
        packet(0x30, b"\x00\x03a/bhello"),  # PUBLISH before CONNECT
        connect_packet("x", username="ops", password=admin)[:-5],  # truncated, then EOF
        packet(0x10, b"\x00\x04MQTT\x05\x02\x00\x3c\x00\x00"),  # MQTT 5 CONNECT
    ]
    for data in hostile:
        conn = RawConnection(ems_broker.port)
        try:
            conn.send(data)
            conn.sock.shutdown(1)
            await conn.wait_closed()
        finally:
            conn.close()
    await assert_still_serving(ems_broker.port, admin)


async def test_oversize_packet_closes_only_that_connection(
    make_token: MakeToken, ems_broker: EmsBrokerProcess, clients: MakeClient
) -> None:
    admin = await make_token("admin")
    bystander = clients("bystander", username="ops", password=admin)
    assert await bystander.connect()
    conn = RawConnection(ems_broker.port)
    try:
        conn.send(connect_packet("big", username="ops", password=admin))
        assert conn.connack_code() == 0
        # Announce 2 MiB (over the 1 MiB default) but send only the start: the broker must
        # refuse on the header, without waiting for (or buffering) the body.
        header = bytes([0x30]) + bytes([0x80, 0x80, 0x80, 0x01])
        conn.send(header + struct.pack("!H", 5) + b"ems/x" + b"\0" * 1024)
        await conn.wait_closed()
    finally:
        conn.close()
    assert "refusing a" in ems_broker.logs()
    assert not bystander.disconnected.is_set()
    await assert_still_serving(ems_broker.port, admin)


async def test_packet_size_limit_is_configurable(
    make_token: MakeToken, ems_broker_factory: Callable[..., EmsBrokerProcess]
) -> None:
    broker = ems_broker_factory(EMS_MQTT_MAX_PACKET="4096")
    admin = await make_token("admin")
    sub = Client(broker.port, "sub", username="ops", password=admin)
    pub = Client(broker.port, "pub", username="ops", password=admin)
    try:
        assert await sub.connect()
        assert await sub.subscribe("ems/#") == 1
        assert await pub.connect()
        await pub.publish("ems/dev1/telemetry", b"x" * 3000)
        assert len((await sub.next_message()).payload) == 3000
        pub.paho.publish("ems/dev1/telemetry", b"x" * 5000, qos=1)
        await pub.wait_disconnected()
        assert not sub.disconnected.is_set()
    finally:
        sub.close()
        pub.close()


async def test_inconsistent_lengths_close_the_connection(
    make_token: MakeToken, ems_broker: EmsBrokerProcess
) -> None:
    admin = await make_token("admin")
    conn = RawConnection(ems_broker.port)
    try:
        conn.send(connect_packet("liar", username="ops", password=admin))
        assert conn.connack_code() == 0
        # A SUBSCRIBE whose topic string claims more bytes than the packet holds.
        conn.send(packet(0x82, struct.pack("!H", 1) + struct.pack("!H", 200) + b"ems/#\x01"))
        await conn.wait_closed()
    finally:
        conn.close()
    await assert_still_serving(ems_broker.port, admin)


async def test_dollar_and_wildcard_publishes(
    make_token: MakeToken, ems_broker: EmsBrokerProcess, clients: MakeClient
) -> None:
    admin = await make_token("admin")
    sub = clients("sub", username="ops", password=admin)
    assert await sub.connect()
    assert await sub.subscribe("#") == 1
    conn = RawConnection(ems_broker.port)
    try:
        conn.send(connect_packet("raw", username="ops", password=admin))
        assert conn.connack_code() == 0
        # A $-topic is dropped but the connection lives on (amqtt left a zombie here).
        conn.send(publish_packet("$bad/topic", b"x", qos=1, packet_id=1))
        assert conn.recv_exactly(4) == b"\x40\x02\x00\x01"  # PUBACK
        conn.send(publish_packet("ems/after", b"after", qos=1, packet_id=2))
        assert conn.recv_exactly(4) == b"\x40\x02\x00\x02"
        assert (await sub.next_message()).topic == "ems/after"
        # A wildcard in a PUBLISH topic is a protocol violation: the connection closes.
        conn.send(publish_packet("ems/+/x", b"x", qos=0))
        await conn.wait_closed()
    finally:
        conn.close()
    await assert_still_serving(ems_broker.port, admin)


async def test_silent_connection_never_sending_connect_is_closed(
    make_token: MakeToken, ems_broker_factory: Callable[..., EmsBrokerProcess]
) -> None:
    broker = ems_broker_factory(EMS_MQTT_CONNECT_TIMEOUT="1")
    conn = RawConnection(broker.port)
    try:
        await conn.wait_closed()
    finally:
        conn.close()
    await assert_still_serving(broker.port, await make_token("admin"))


async def test_keepalive_is_enforced_and_fires_the_will(
    make_token: MakeToken, ems_broker: EmsBrokerProcess, clients: MakeClient
) -> None:
    device = await make_token("device", device_id="dev1")
    admin = await make_token("admin")
    watcher = clients("watcher", username="ops", password=admin)
    assert await watcher.connect()
    assert await watcher.subscribe("ems/+/status") == 1
    conn = RawConnection(ems_broker.port)
    try:
        will = ("ems/dev1/status", b'{"v": 1, "state": "offline"}', 1, True)
        conn.send(connect_packet("dev1", username="dev1", password=device, keepalive=1, will=will))
        assert conn.connack_code() == 0
        # Now go silent, like a device whose network vanished (a half-open connection).
        message = await watcher.next_message()
        assert (message.topic, message.payload) == ("ems/dev1/status", will[1])
        await conn.wait_closed()
    finally:
        conn.close()
    late = clients("late", username="ops", password=admin)
    assert await late.connect()
    assert await late.subscribe("ems/dev1/status") == 1
    retained = await late.next_message()
    assert (retained.payload, retained.retain) == (will[1], True)


async def test_no_loss_when_publisher_disconnects_right_after_its_pubacks(
    make_token: MakeToken, clients: MakeClient
) -> None:
    admin = await make_token("admin")
    sub = clients("sub", username="ops", password=admin)
    assert await sub.connect()
    assert await sub.subscribe("loss/#") == 1
    pub = clients("pub", username="ops", password=admin)
    assert await pub.connect()
    infos = [pub.paho.publish(f"loss/{i}", b"x" * 600, qos=1) for i in range(200)]
    for info in infos:
        info.wait_for_publish(30)
        assert info.is_published()
    pub.close()
    received = {(await sub.next_message()).topic for _ in range(200)}
    assert received == {f"loss/{i}" for i in range(200)}
