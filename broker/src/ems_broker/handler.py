"""amqtt's broker-side protocol handler, with two of its gaps closed.

- Keepalive: amqtt times out the read of the next packet but then does nothing
  (``handle_read_timeout`` is a no-op), so a half-open connection lives forever and its last
  will never fires. Here the timeout closes the connection the abnormal way, which publishes
  the will, as MQTT 3.1.1 section 3.1.2.10 requires.
- PUBACK before routing: amqtt answers a QoS 1 PUBLISH as soon as it is queued, before the
  ACL check and fan-out, so a publisher that disconnects right after its PUBACKs loses the
  tail of its messages. Here the PUBACK waits until the broker has routed the message.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from amqtt.mqtt.constants import QOS_1
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.session import IncomingApplicationMessage

from ems_broker.identity import describe

logger = logging.getLogger(__name__)


class RoutedMessage(IncomingApplicationMessage):  # type: ignore[misc]
    """An incoming QoS 1 message whose PUBACK waits for ``mark_routed``."""

    def __init__(self, packet_id: int, topic: str, data: bytes, retain: bool) -> None:
        super().__init__(packet_id, topic, QOS_1, data, retain)
        self.routed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def mark_routed(self) -> None:
        if not self.routed.done():
            self.routed.set_result(None)


class EmsProtocolHandler(BrokerProtocolHandler):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Set once the broker has finished with this connection (will sent, session
        # detached), so a takeover can wait for it before reusing the client id.
        self.finished = asyncio.Event()
        self._expiry: asyncio.Task[None] | None = None

    def handle_read_timeout(self) -> None:
        if self._expiry is not None or self.session is None:
            return
        logger.warning(
            "closing MQTT connection (%s): nothing received within 1.5 x keepalive",
            describe(self.session),
        )
        self._expiry = asyncio.create_task(
            self.handle_connection_closed(), name="ems-broker-keepalive-expired"
        )

    async def handle_publish(self, publish_packet: Any) -> None:
        if publish_packet.qos != QOS_1 or self.session is None:
            await super().handle_publish(publish_packet)
            return
        if publish_packet.topic_name is None or publish_packet.data is None:
            return
        packet_id = publish_packet.variable_header.packet_id
        message = RoutedMessage(
            packet_id, publish_packet.topic_name, publish_packet.data, publish_packet.retain_flag
        )
        message.publish_packet = publish_packet
        await self.session.delivered_message_queue.put(message)
        await message.routed
        puback = PubackPacket.build(packet_id)
        await self._send_packet(puback)
        message.puback_packet = puback
