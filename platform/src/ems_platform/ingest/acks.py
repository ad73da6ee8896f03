"""PUBACK after commit: paho's manual ack, reached through aiomqtt 2.x.

aiomqtt 2.5 has no public switch for it (aiomqtt issue 345 shows this route): paho-mqtt 2.x
``manual_ack`` stops paho from answering a QoS 1 PUBLISH the moment it is parsed, and
``ack(mid, qos)`` sends the PUBACK later. We send it only once the transaction holding the
message has committed, so a crash, a database outage or a lost link between receipt and
commit leaves the message with the broker, which delivers it again.

A message id means something only on the connection that delivered it: after a reconnect
the broker redelivers what we had not acknowledged, and an old mid may name another
message. Each handle therefore carries the generation of its connection, and handles of an
earlier connection are never acked (their redelivery is stored as a duplicate and acked).

A committed batch's PUBACKs go out as one write: paho's ``ack`` queues one packet (and wakes
its writer) per message, which under load cost a syscall or two per message. The PUBACKs are
encoded here and handed to paho's output queue as one buffer, so they stay in order with
whatever else paho sends (PINGREQ, SUBSCRIBE).

This is the one place that touches paho through aiomqtt's private ``_client`` and paho's
private ``_packet_queue`` (both pinned <3).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import NamedTuple

import aiomqtt
import paho.mqtt.client as mqtt

from ems_platform.ingest.packet_reader import Delivered

log = logging.getLogger(__name__)

_PUBACK = struct.Struct("!BBH")
_new = tuple.__new__


class PahoAck(NamedTuple):
    """The ack handle of one delivered message (``Incoming.ack``)."""

    generation: int
    mid: int
    qos: int


def enable_manual_ack(client: aiomqtt.Client) -> None:
    """Must run before ``connect``: messages of a persistent session arrive right after it."""
    client._client.manual_ack_set(True)


class Acknowledger:
    """Sends the PUBACKs of committed messages on the connection that delivered them."""

    def __init__(self) -> None:
        self._paho: mqtt.Client | None = None
        self.generation = 0
        #: Messages delivered on the current connection and not yet acknowledged.
        self.outstanding = 0
        self.acked = 0
        #: Committed messages of an earlier connection: the broker redelivers them.
        self.stale = 0

    def connected(self, client: aiomqtt.Client) -> int:
        """A new connection: handles of earlier ones go stale. Returns its generation."""
        self.generation += 1
        self._paho = client._client
        self.outstanding = 0
        return self.generation

    def disconnected(self) -> None:
        self._paho = None
        self.outstanding = 0

    def handle(self, message: Delivered) -> PahoAck | None:
        """The handle of a message just taken from the queue; None if it needs no ack."""
        if message.qos == 0:
            return None
        self.outstanding += 1
        # PahoAck(...) without NamedTuple's Python-level __new__ (once per message).
        return _new(PahoAck, (self.generation, message.mid, message.qos))

    def __call__(self, handles: Sequence[object]) -> None:
        """``BatchWriter.on_committed``: handles arrive in delivery order, as MQTT wants."""
        packets = bytearray()
        count = 0
        for handle in handles:
            if not isinstance(handle, PahoAck):
                continue
            if self._paho is None or handle.generation != self.generation:
                self.stale += 1
                continue
            if handle.qos == 1:
                packets += _PUBACK.pack(mqtt.PUBACK, 2, handle.mid)
                count += 1
            elif self._paho.ack(handle.mid, handle.qos) == mqtt.MQTT_ERR_SUCCESS:
                self._sent(1)
            else:
                self.stale += 1
        if not count or self._paho is None:
            return
        rc = self._paho._packet_queue(mqtt.PUBACK, bytes(packets), 0, 0)
        if rc == mqtt.MQTT_ERR_SUCCESS:
            self._sent(count)
        else:
            # The link is going down; the broker will redeliver, and the loop logs the drop.
            self.stale += count

    def _sent(self, count: int) -> None:
        self.outstanding = max(0, self.outstanding - count)
        self.acked += count
