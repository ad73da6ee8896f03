"""An aiomqtt client whose socket reads pause while its message queue is full.

aiomqtt's own bound (``max_queued_incoming_messages``) *discards* messages, which a full
queue would then have to wait for as redeliveries; leaving it unbounded lets a slow
database turn into unbounded memory. With ack-after-commit the broker's in-flight window
(Mosquitto's ``max_inflight_messages``) already bounds what it sends us, but not every
broker has one (amqtt does not). So above a high-water mark we stop reading the socket: TCP
flow control then holds messages back at the broker, which still owns them (not yet
PUBACKed). Below the low-water mark reading resumes.

This reaches into aiomqtt 2.x internals (pinned ``<3``): the socket-open hook and the queue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import aiomqtt
import paho.mqtt.client as mqtt
from aiomqtt.types import PahoSocket

log = logging.getLogger(__name__)


class FlowQueue(asyncio.Queue[aiomqtt.Message]):
    """Never refuses an item (refusing would drop it); reports crossing its watermarks."""

    high_water = 0
    low_water = 0
    on_high: Callable[[], None] | None = None
    on_low: Callable[[], None] | None = None

    def _put(self, item: aiomqtt.Message) -> None:
        super()._put(item)
        if self.on_high is not None and self.qsize() >= self.high_water:
            self.on_high()

    def _get(self) -> aiomqtt.Message:
        item = super()._get()
        if self.on_low is not None and self.qsize() <= self.low_water:
            self.on_low()
        return item


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
        self.paused = False
        self.on_pause_change: Callable[[bool], None] | None = None

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def take_nowait(self) -> aiomqtt.Message | None:
        """A message left in the queue (after a disconnect, say), or None."""
        try:
            return self._queue.get_nowait()
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
        log.info("MQTT reads resumed")
        if self.on_pause_change is not None:
            self.on_pause_change(False)

    def _read_ready(self) -> None:
        # Mirrors aiomqtt's own reader callback, which cannot be re-registered from outside.
        try:
            self._client.loop_read()
        except Exception as exc:
            if not self._disconnected.done():
                self._disconnected.set_exception(exc)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: PahoSocket) -> None:
        super()._on_socket_open(client, userdata, sock)
        # Runs in aiomqtt's connect thread; the bookkeeping must happen on the loop, after
        # the reader that the parent just scheduled.
        self._loop.call_soon_threadsafe(self._socket_opened, sock.fileno())

    def _socket_opened(self, fd: int) -> None:
        self._fd = fd
        if self.paused:
            self._loop.remove_reader(fd)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: PahoSocket) -> None:
        super()._on_socket_close(client, userdata, sock)
        self._fd = None

    def settle_disconnect(self) -> None:
        """Mark a dropped link's error as seen (it was logged by whoever ended the session)."""
        if self._disconnected.done() and not self._disconnected.cancelled():
            self._disconnected.exception()

    async def next_message(self, end: asyncio.Event) -> aiomqtt.Message | None:
        """The next message; None once ``end`` is set; MqttError when the link drops.

        Unlike ``Client.messages`` this lets a session end *between* messages, so a message
        taken from the queue is never abandoned half-handled.
        """
        if end.is_set():
            return None
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
            return getter.result()
        if self._disconnected in done:
            raise aiomqtt.MqttError("disconnected") from self._disconnected.exception()
        return None
