"""amqtt's broker-side protocol handler, with three of its gaps closed.

- Keepalive: amqtt times out the read of the next packet but then does nothing
  (``handle_read_timeout`` is a no-op), so a half-open connection lives forever and its last
  will never fires. Here the timeout closes the connection the abnormal way, which publishes
  the will, as MQTT 3.1.1 section 3.1.2.10 requires.
- PUBACK before routing: amqtt answers a QoS 1 PUBLISH as soon as it is queued, before the
  ACL check and fan-out, so a publisher that disconnects right after its PUBACKs loses the
  tail of its messages. Here the PUBACK waits until the broker has routed the message.
- Outbound QoS 1: amqtt waits 5 s for the subscriber's PUBACK, then drops the message, and
  a connection that ends drops every unacknowledged one too, so a slow or reconnecting
  persistent subscriber (the platform's ingest) loses messages the publisher was told were
  delivered. Here an outbound QoS 1 message stays in the session's ``inflight_out`` until
  its PUBACK arrives, however long that takes, and is resent with DUP set, in its original
  order, when the session is resumed (MQTT 3.1.1 section 4.4, [MQTT-4.4.0-1]).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from amqtt.mqtt.constants import QOS_1
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.puback import PubackPacket
from amqtt.session import OUTGOING, IncomingApplicationMessage, OutgoingApplicationMessage

from ems_broker.identity import describe

logger = logging.getLogger(__name__)

_QOS2_RETRY_TIMEOUT_S = 10


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

    async def _handle_qos1_message_flow(self, app_message: Any) -> None:
        if app_message.direction != OUTGOING or self.session is None:
            await super()._handle_qos1_message_flow(app_message)
            return
        # No waiter and no timeout: the message leaves inflight_out only when its PUBACK
        # arrives (handle_puback), so neither a slow subscriber nor a dropped connection
        # loses it. Not waiting also keeps a task per in-flight message off the broker.
        self.session.inflight_out[app_message.packet_id] = app_message
        packet = app_message.build_publish_packet(dup=app_message.publish_packet is not None)
        app_message.publish_packet = packet
        await self._send_packet(packet)

    async def handle_puback(self, puback: Any) -> None:
        packet_id = puback.variable_header.packet_id if puback.variable_header else None
        inflight = self.session.inflight_out if self.session is not None else {}
        message = inflight.get(packet_id)
        if isinstance(message, OutgoingApplicationMessage) and message.qos == QOS_1:
            message.puback_packet = puback
            del inflight[packet_id]
            return
        await super().handle_puback(puback)

    async def _retry_deliveries(self) -> None:
        """Resend the session's unacknowledged QoS 1 messages, in order, with DUP set."""
        if self.session is None:
            return
        resend = [
            message
            for message in self.session.inflight_out.values()
            if isinstance(message, OutgoingApplicationMessage) and message.qos == QOS_1
        ]
        if resend:
            logger.info(
                "resending %d unacknowledged QoS 1 message(s) to %s",
                len(resend),
                describe(self.session),
            )
            # One hold of the write lock keeps them in their original order, ahead of new
            # messages routed to this session meanwhile.
            async with self._write_lock:
                for message in resend:
                    message.publish_packet = message.build_publish_packet(dup=True)
                    if self.writer is None:
                        return
                    await message.publish_packet.to_stream(self.writer)
        others = [
            message
            for message in (*self.session.inflight_in.values(), *self.session.inflight_out.values())
            if not (isinstance(message, OutgoingApplicationMessage) and message.qos == QOS_1)
        ]
        if others:
            # QoS 2 (unused by EMS) keeps amqtt's own retry flow and its 10 s bound.
            flows = [
                asyncio.create_task(
                    asyncio.wait_for(self._handle_message_flow(message), _QOS2_RETRY_TIMEOUT_S),
                    name="ems-broker-qos2-retry",
                )
                for message in others
            ]
            await asyncio.wait(flows)
