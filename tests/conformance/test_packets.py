"""Hostile and malformed PUBLISHes: oversize packets, ``$`` topics, wildcards in topic names.

What the connection must look like afterwards (tests/conformance/README.md):

- a packet over the size limit (``EMS_MQTT_MAX_PACKET``, default 1 MiB) closes that
  connection; its message goes nowhere; everyone else is unaffected;
- a PUBLISH to a ``$`` topic is never delivered, and the connection is not left a zombie:
  it either still works (the next PUBLISH is acknowledged and delivered) or is closed;
- a wildcard or empty topic name is a protocol violation (MQTT 3.1.1 section 3.3.2.1): the
  connection is closed.
"""

from __future__ import annotations

import contextlib
import struct

from tests.conformance.conftest import MakeClient, Tokens
from tests.conformance.mqtt import Client, collect_until
from tests.conformance.raw import PUBACK, RawClient, packet, publish_packet
from tests.support.brokers import BrokerUnderTest

MIB = 1024 * 1024
DOLLAR_TOPICS = ("$SYS/broker/fake", "$ems/dev1/telemetry")


async def _watcher(broker: BrokerUnderTest, tokens: Tokens, clients: MakeClient) -> Client:
    service = await tokens.make("service")
    watcher = clients(broker, "watcher", username="ingest", password=service.token)
    assert await watcher.connect()
    assert await watcher.subscribe("ems/#") == 1
    return watcher


async def _still_serving(watcher: Client, publisher: Client, marker: bytes) -> None:
    await publisher.publish("ems/dev9/telemetry", marker)
    assert await collect_until(watcher, "ems/dev9/telemetry", marker) == []


async def test_oversize_packet_closes_only_that_connection(
    broker: BrokerUnderTest, tokens: Tokens, clients: MakeClient
) -> None:
    watcher = await _watcher(broker, tokens, clients)
    admin = await tokens.make("admin")
    bystander = clients(broker, "bystander", username="root", password=admin.token)
    assert await bystander.connect()
    conn = RawClient(broker.port, host=broker.host)
    try:
        assert await conn.connect("big", username="root", password=admin.token) == 0
        # The broker may close as soon as it has read the fixed header, mid-send.
        with contextlib.suppress(OSError):
            conn.send(publish_packet("ems/dev9/telemetry", b"o" * (MIB + 1024), qos=1))
        await conn.wait_closed()
    finally:
        conn.close()
    # The message went nowhere (the marker is the first thing the watcher sees) and the
    # broker serves everyone else as before.
    await _still_serving(watcher, bystander, b"after oversize")
    assert not bystander.disconnected.is_set()


async def test_packet_just_under_the_limit_is_delivered(
    broker: BrokerUnderTest, tokens: Tokens, clients: MakeClient
) -> None:
    watcher = await _watcher(broker, tokens, clients)
    admin = await tokens.make("admin")
    publisher = clients(broker, "publisher", username="root", password=admin.token)
    assert await publisher.connect()
    payload = b"u" * (MIB - 1024)
    await publisher.publish("ems/dev9/telemetry", payload)
    message = await watcher.next_message()
    assert (message.topic, len(message.payload)) == ("ems/dev9/telemetry", len(payload))


async def test_dollar_topic_publish_is_dropped_and_leaves_no_zombie(
    broker: BrokerUnderTest, tokens: Tokens, clients: MakeClient
) -> None:
    watcher = await _watcher(broker, tokens, clients)
    admin = await tokens.make("admin")
    spy = clients(broker, "spy", username="root", password=admin.token)
    assert await spy.connect()
    for n, topic in enumerate(DOLLAR_TOPICS):
        # Whether a broker lets even an admin subscribe to a $ topic is its business; if
        # it does, the message must still not arrive.
        await spy.subscribe(topic)
        conn = RawClient(broker.port, host=broker.host)
        marker = b"after dollar %d" % n
        try:
            assert await conn.connect(f"raw{n}", username="root", password=admin.token) == 0
            conn.send(publish_packet(topic, b"reserved", qos=1, packet_id=1))
            conn.send(publish_packet("ems/dev9/telemetry", marker, qos=1, packet_id=2))
            try:
                acks = [(await conn.expect(PUBACK)).packet_id() for _ in range(2)]
            except ConnectionError:
                acks = []  # closed by the broker: allowed, as long as it is really closed
            if acks:
                # Still open, so it must still work: the next message was acknowledged
                # and is delivered.
                assert acks == [1, 2]
                assert await collect_until(watcher, "ems/dev9/telemetry", marker) == []
            else:
                await conn.wait_closed()
        finally:
            conn.close()
    await _still_serving(watcher, spy, b"still serving")
    assert [m.topic for m in list(spy.messages.queue) if m.topic.startswith("$")] == []


async def test_wildcard_or_empty_topic_publish_closes_the_connection(
    broker: BrokerUnderTest, tokens: Tokens, clients: MakeClient
) -> None:
    watcher = await _watcher(broker, tokens, clients)
    admin = await tokens.make("admin")
    bystander = clients(broker, "bystander", username="root", password=admin.token)
    assert await bystander.connect()
    for n, topic in enumerate(("ems/+/telemetry", "ems/#", "")):
        conn = RawClient(broker.port, host=broker.host)
        try:
            assert await conn.connect(f"raw{n}", username="root", password=admin.token) == 0
            body = struct.pack("!H", len(topic.encode())) + topic.encode() + b"bad"
            conn.send(packet(0x30, body))  # QoS 0 PUBLISH
            await conn.wait_closed()
        finally:
            conn.close()
    await _still_serving(watcher, bystander, b"after wildcard")
