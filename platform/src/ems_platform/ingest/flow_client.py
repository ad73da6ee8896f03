"""An aiomqtt client whose socket reads pause while its message queue is full.

aiomqtt's own bound (``max_queued_incoming_messages``) *discards* messages, which a full
queue would then have to wait for as redeliveries; leaving it unbounded lets a slow
database turn into unbounded memory. With ack-after-commit the broker's in-flight window
(Mosquitto's ``max_inflight_messages``) already bounds what it sends us, but not every
broker has one (amqtt does not). So above a high-water mark we stop reading the socket: TCP
flow control then holds messages back at the broker, which still owns them (not yet
PUBACKed). Below the low-water mark reading resumes.

It also reads in bulk (``packet_reader``): one ``recv`` brings hundreds of messages, a
wake-up handles every whole packet buffered, and PUBLISHes are decoded without paho's
per-message machinery, a read's worth at a time, straight into the queue as ``Delivered``.

This reaches into aiomqtt 2.x and paho 2.x internals (pinned ``<3``): the socket hooks,
``on_message``, paho's packet reader and the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import aiomqtt
import paho.mqtt.client as mqtt
from aiomqtt.types import PahoSocket

from ems_platform.ingest.packet_reader import Delivered, PacketReader, from_paho

log = logging.getLogger(__name__)


def _tls_pending(client: mqtt.Client) -> bool:
    """Decrypted bytes an SSL socket holds, which wake no reader (paho issue 131)."""
    pending = getattr(client._sock, "pending", None)
    return pending is not None and pending() > 0


class FlowQueue(asyncio.Queue[Delivered]):
    """Never refuses an item (refusing would drop it); reports crossing its watermarks.

    ``put_many`` and ``take_many`` move a whole read's messages at once, with one watermark
    check and one wake-up, instead of ``put_nowait``/``get_nowait`` for each. They work on
    ``asyncio.Queue``'s own deque and waiter lists (the same private attributes its
    ``put_nowait``/``get_nowait`` use, CPython 3.11-3.13; tests/platform/test_flow_queue.py).
    """

    high_water = 0
    low_water = 0
    on_high: Callable[[], None] | None = None
    on_low: Callable[[], None] | None = None

    def _put(self, item: Delivered) -> None:
        super()._put(item)
        if self.on_high is not None and self.qsize() >= self.high_water:
            self.on_high()

    def _get(self) -> Delivered:
        item = super()._get()
        if self.on_low is not None and self.qsize() <= self.low_water:
            self.on_low()
        return item

    def put_many(self, items: list[Delivered]) -> None:
        """``put_nowait`` of each item, in order."""
        if not items:
            return
        queue: deque[Delivered] = self._queue  # type: ignore[attr-defined]
        queue.extend(items)
        self._unfinished_tasks += len(items)  # type: ignore[attr-defined]
        self._finished.clear()  # type: ignore[attr-defined]
        self._wakeup_next(self._getters)  # type: ignore[attr-defined]
        if self.on_high is not None and self.qsize() >= self.high_water:
            self.on_high()

    def take_many(self, limit: int) -> list[Delivered]:
        """Up to ``limit`` items without waiting (``get_nowait`` of each), oldest first."""
        queue: deque[Delivered] = self._queue  # type: ignore[attr-defined]
        count = min(limit, len(queue))
        if count <= 0:
            return []
        popleft = queue.popleft
        taken = [popleft() for _ in range(count)]
        self._wakeup_next(self._putters)  # type: ignore[attr-defined]
        if self.on_low is not None and self.qsize() <= self.low_water:
            self.on_low()
        return taken


class FlowControlledClient(aiomqtt.Client):
    def __init__(self, *args: Any, high_water: int, **kwargs: Any) -> None:
        kwargs["queue_type"] = FlowQueue
        kwargs["max_queued_incoming_messages"] = 0
        super().__init__(*args, **kwargs)
        queue = cast(FlowQueue, self._queue)
        queue.high_water = max(1, high_water)
        queue.low_water = max(0, high_water // 2)
        queue.on_high = self.pause_reading
        queue.on_low = self.resume_reading
        self._fd: int | None = None
        self._reader = PacketReader(self._client, self._queue.put_nowait)  # type: ignore[arg-type]
        self._reader.install()
        self.paused = False
        self.on_pause_change: Callable[[bool], None] | None = None

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        # Only what the packet reader leaves to paho (QoS 2, a topic that is not UTF-8...).
        self._queue.put_nowait(from_paho(message))  # type: ignore[arg-type]

    def take_nowait(self) -> Delivered | None:
        """A message left in the queue (after a disconnect, say), or None."""
        try:
            return self._queue.get_nowait()  # type: ignore[return-value]
        except asyncio.QueueEmpty:
            return None

    def discard_queued(self) -> int:
        """Forget what a lost link left in the queue (unacknowledged, so the broker keeps it)."""
        dropped = self._queue.qsize()
        while self.take_nowait() is not None:
            pass
        return dropped

    def pause_reading(self) -> None:
        if self.paused:
            return
        self.paused = True
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
        log.info("MQTT reads paused: %d messages waiting", self._queue.qsize())
        if self.on_pause_change is not None:
            self.on_pause_change(True)

    def resume_reading(self) -> None:
        if not self.paused:
            return
        self.paused = False
        if self._fd is not None:
            self._loop.add_reader(self._fd, self._read_ready)
            if self._reader.has_packet():
                # Bytes already read from the socket wake no reader; parse them now.
                self._loop.call_soon(self._read_ready)
        log.info("MQTT reads resumed")
        if self.on_pause_change is not None:
            self.on_pause_change(False)

    def _read_ready(self) -> None:
        # Replaces aiomqtt's reader callback: every complete packet already read, but no more
        # once the queue is full (the rest waits in the buffer). loop_read reads the socket
        # when nothing whole is buffered and handles one packet, of any kind (paho's state
        # machine, errors); the PUBLISHes buffered behind it are then decoded in one go.
        queue = cast(FlowQueue, self._queue)
        reader = self._reader
        try:
            while True:
                self._client.loop_read()
                if self.paused or self._fd is None:
                    break
                room = queue.high_water - queue.qsize()
                if room > 0:
                    queue.put_many(reader.take_publishes(room))
                    if self.paused:
                        break
                if not reader.has_packet() and not _tls_pending(self._client):
                    break
        except Exception as exc:
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: PahoSocket) -> None:
        super()._on_socket_open(client, userdata, sock)
        # Runs in aiomqtt's connect thread; the bookkeeping must happen on the loop, after
        # the reader that the parent just scheduled.
        self._loop.call_soon_threadsafe(self._socket_opened, sock.fileno())

    def _socket_opened(self, fd: int) -> None:
        # aiomqtt's own reader may already have run (it was registered first) and left whole
        # packets in the buffer: keep them, and parse them now if reading is on.
        self._fd = fd
        if self.paused:
            self._loop.remove_reader(fd)
        else:
            self._loop.add_reader(fd, self._read_ready)
            if self._reader.has_packet():
                self._loop.call_soon(self._read_ready)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: PahoSocket) -> None:
        super()._on_socket_close(client, userdata, sock)
        self._fd = None
        self._reader.reset()  # bytes of a closed socket mean nothing on the next one

    def settle_disconnect(self) -> None:
        """Mark a dropped link's error as seen (it was logged by whoever ended the session)."""
        if self._disconnected.done() and not self._disconnected.cancelled():
            self._disconnected.exception()

    async def next_batch(self, end: asyncio.Event, limit: int) -> list[Delivered] | None:
        """The messages waiting (at least one, at most ``limit``), in arrival order; None once
        ``end`` is set; MqttError when the link drops.

        Unlike ``Client.messages`` this lets a session end *between* batches, so a message
        taken from the queue is never abandoned half-handled.
        """
        if end.is_set():
            return None
        first = self.take_nowait()
        if first is None:
            first = await self._next_message(end)
            if first is None:
                return None
        batch = [first]
        if limit > 1:
            batch += cast(FlowQueue, self._queue).take_many(limit - 1)
        return batch

    async def _next_message(self, end: asyncio.Event) -> Delivered | None:
        getter = asyncio.ensure_future(self._queue.get())
        ender = asyncio.ensure_future(end.wait())
        try:
            done, _ = await asyncio.wait(
                (getter, ender, self._disconnected), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ender.cancel()
            if not getter.done():
                getter.cancel()
        if getter in done:
            return getter.result()  # type: ignore[return-value]
        if self._disconnected in done:
            raise aiomqtt.MqttError("disconnected") from self._disconnected.exception()
        return None
