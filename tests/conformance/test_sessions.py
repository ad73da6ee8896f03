"""Connection lifecycle: takeover, keepalive and last will, QoS 1 delivery guarantees."""

from __future__ import annotations

import asyncio

import pytest

from tests.conformance.conftest import MakeClient, Tokens
from tests.conformance.mqtt import Client, collect_until
from tests.conformance.raw import (
    PUBACK,
    PUBLISH,
    SUBACK,
    RawClient,
    puback_packet,
    publish_packet,
    subscribe_packet,
)
from tests.support.brokers import BrokerUnderTest

OFFLINE = b'{"v": 1, "state": "offline"}'
PAYLOAD = b"x" * 600
# Longer than the 5 s amqtt 0.12.1 waits for a subscriber's PUBACK before dropping the
# message. A scenario parameter (a slow subscriber), not a bound on anything measured.
SLOWER_THAN_AMQTT_PUBACK_TIMEOUT_S = 6.0


@pytest.mark.parametrize("clean_session", [True, False], ids=["clean", "persistent"])
async def test_second_connection_replaces_the_first(
    broker: BrokerUnderTest, tokens: Tokens, clients: MakeClient, clean_session: bool
) -> None:
    device = await tokens.make("device", device_id="dev1")
    service = await tokens.make("service")
    platform = clients(broker, "platform", username="platform", password=service.token)
    assert await platform.connect()
    assert await platform.subscribe("ems/dev1/telemetry") == 1

    def device_client() -> Client:
        return clients(
            broker, "dev1", username="dev1", password=device.token, clean_session=clean_session
        )

    old = device_client()
    assert await old.connect()
    assert await old.subscribe("ems/dev1/cmd") == 1
    new = device_client()
    assert await new.connect()
    await old.wait_disconnected()
    if clean_session:
        assert await new.subscribe("ems/dev1/cmd") == 1
    # A persistent session carries its subscription over: the new connection must not be
    # deaf to the commands sent to it (amqtt 0.12.1 left it deaf).
    await platform.publish("ems/dev1/cmd", b"command")
    message = await new.next_message()
    assert (message.topic, message.payload) == ("ems/dev1/cmd", b"command")
    await new.publish("ems/dev1/telemetry", b"sample")
    assert await collect_until(platform, "ems/dev1/telemetry", b"sample") == []
    assert old.messages.empty()


async def test_silent_device_gets_its_will_published_and_retained(
    broker: BrokerUnderTest, tokens: Tokens, clients: MakeClient
) -> None:
    device = await tokens.make("device", device_id="dev1")
    viewer = await tokens.make("viewer")
    watcher = clients(broker, "watcher", username="wall", password=viewer.token)
    assert await watcher.connect()
    assert await watcher.subscribe("ems/dev1/status") == 1
    conn = RawClient(broker.port, host=broker.host)
    try:
        will = ("ems/dev1/status", OFFLINE, 1, True)
        code = await conn.connect(
            "dev1", username="dev1", password=device.token, keepalive=1, will=will
        )
        assert code == 0
        # Now silent without closing the socket: a device whose network vanished.
        message = await watcher.next_message()
        assert (message.topic, message.payload) == ("ems/dev1/status", OFFLINE)
        await conn.wait_closed()
    finally:
        conn.close()
    late = clients(broker, "late", username="wall", password=viewer.token)
    assert await late.connect()
    assert await late.subscribe("ems/dev1/status") == 1
    retained = await late.next_message()
    assert (retained.topic, retained.payload, retained.retain) == (
        "ems/dev1/status",
        OFFLINE,
        True,
    )


async def test_no_loss_when_the_publisher_vanishes_right_after_its_pubacks(
    broker: BrokerUnderTest, tokens: Tokens, clients: MakeClient
) -> None:
    count = 300
    device = await tokens.make("device", device_id="dev1")
    service = await tokens.make("service")
    platform = clients(broker, "platform", username="platform", password=service.token)
    assert await platform.connect()
    assert await platform.subscribe("ems/+/telemetry") == 1
    conn = RawClient(broker.port, host=broker.host)
    try:
        assert await conn.connect("dev1", username="dev1", password=device.token) == 0
        # All publishes pipelined, then every PUBACK read, then the socket dropped without
        # a DISCONNECT: the broker has promised delivery of each acknowledged message.
        conn.send(
            b"".join(
                publish_packet("ems/dev1/telemetry", b"%05d" % n + PAYLOAD, qos=1, packet_id=n)
                for n in range(1, count + 1)
            )
        )
        acked = {(await conn.expect(PUBACK)).packet_id() for _ in range(count)}
        assert acked == set(range(1, count + 1))
    finally:
        conn.close()
    received = {int((await platform.next_message()).payload[:5]) for _ in range(count)}
    assert received == acked


async def test_unacked_messages_survive_a_slow_and_reconnecting_subscriber(
    broker: BrokerUnderTest, tokens: Tokens, clients: MakeClient
) -> None:
    """A persistent subscriber (like the platform's ingest) that holds its PUBACKs back and
    then loses its connection gets every message again, with DUP set, when it comes back."""
    count = 20
    device = await tokens.make("device", device_id="dev1")
    service = await tokens.make("service")
    publisher = clients(broker, "dev1", username="dev1", password=device.token)
    assert await publisher.connect()

    slow = RawClient(broker.port, host=broker.host)
    login = {"username": "ingest", "password": service.token, "clean_session": False}
    try:
        assert await slow.connect("ingest", **login) == 0
        slow.send(subscribe_packet("ems/+/telemetry", qos=1))
        await slow.expect(SUBACK)
        for n in range(count):
            await publisher.publish("ems/dev1/telemetry", b"%05d" % n)
        first = [(await slow.expect(PUBLISH)).publish() for _ in range(count)]
        assert [payload for _, _, payload in first] == [b"%05d" % n for n in range(count)]
        await asyncio.sleep(SLOWER_THAN_AMQTT_PUBACK_TIMEOUT_S)
    finally:
        slow.close()  # gone without a PUBACK or a DISCONNECT

    again = RawClient(broker.port, host=broker.host)
    try:
        assert await again.connect("ingest", **login) == 0
        assert again.session_present
        redelivered = []
        for _ in range(count):
            message = await again.expect(PUBLISH)
            _topic, packet_id, payload = message.publish()
            assert message.dup and message.qos == 1 and packet_id is not None
            again.send(puback_packet(packet_id))
            redelivered.append(payload)
        assert redelivered == [payload for _, _, payload in first]
    finally:
        again.close()


async def test_messages_published_while_a_persistent_subscriber_is_away_are_delivered(
    broker: BrokerUnderTest, tokens: Tokens, clients: MakeClient
) -> None:
    """The platform's ingest restarts (or is killed): what devices publish meanwhile waits in
    its persistent session and arrives, in order, when it logs in again. The broker must
    read-check those queued messages for a session that has no live connection."""
    count = 25
    device = await tokens.make("device", device_id="dev1")
    service = await tokens.make("service")
    publisher = clients(broker, "dev1", username="dev1", password=device.token)
    assert await publisher.connect()
    login = {"username": "ingest", "password": service.token, "clean_session": False}

    first = RawClient(broker.port, host=broker.host)
    try:
        assert await first.connect("ingest", **login) == 0
        first.send(subscribe_packet("ems/+/telemetry", qos=1))
        await first.expect(SUBACK)
    finally:
        first.close()  # killed: no DISCONNECT

    # Publish only once the broker has noticed the subscriber is gone, so every message is
    # queued for an offline session rather than sent down the dying socket.
    await asyncio.sleep(0.5)
    for n in range(count):
        await publisher.publish("ems/dev1/telemetry", b"away-%03d" % n)

    back = RawClient(broker.port, host=broker.host)
    try:
        assert await back.connect("ingest", **login) == 0
        assert back.session_present
        received = []
        for _ in range(count):
            message = await back.expect(PUBLISH)
            _topic, packet_id, payload = message.publish()
            if packet_id is not None:
                back.send(puback_packet(packet_id))
            received.append(payload)
        assert received == [b"away-%03d" % n for n in range(count)]
    finally:
        back.close()
