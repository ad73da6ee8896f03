"""Moves outbox rows to MQTT: oldest first, a bounded window in flight, deleted on PUBACK.

Live, each sample goes out alone as soon as it is stored. With a backlog (after an outage
or a restart) rows leave as contract batches of up to 3600 samples / 512 KiB. The cursor
only moves forward: rows handed to paho stay owed by paho (it resends them after a
reconnect) until their PUBACK deletes them here.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ems_contract import MAX_BATCH_BYTES
from ems_device.outbox import Outbox, batch_payload

log = logging.getLogger(__name__)


class Link(Protocol):
    @property
    def connected(self) -> bool: ...

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> int | None: ...


@dataclass(frozen=True, slots=True)
class InFlight:
    first_id: int
    last_id: int
    rows: int


class Publisher:
    def __init__(
        self,
        outbox: Outbox,
        link: Link,
        topic: str,
        window: int = 8,
        batch_min: int = 10,
        on_acked: Callable[[int], None] | None = None,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self._outbox = outbox
        self._link = link
        self._topic = topic
        self._window = window
        self._batch_min = batch_min
        self._on_acked = on_acked
        self._max_batch_bytes = max_batch_bytes
        self._cursor = 0
        self._inflight: dict[int, InFlight] = {}
        self._wake = asyncio.Event()
        self.sent_batches = 0
        self.sent_singles = 0

    @property
    def inflight_rows(self) -> int:
        return sum(item.rows for item in self._inflight.values())

    def wake(self) -> None:
        self._wake.set()

    def on_published(self, mid: int) -> None:
        item = self._inflight.pop(mid, None)
        if item is None:
            return
        try:
            self._outbox.delete_range(item.first_id, item.last_id)
        except sqlite3.Error as exc:
            # The rows stay and are sent again after a restart: a duplicate, not a loss.
            log.error(
                "cannot delete acknowledged rows %d..%d: %s", item.first_id, item.last_id, exc
            )
            return
        self._wake.set()
        if self._on_acked is not None:
            self._on_acked(len(self._outbox))

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self.pump()

    def pump(self) -> None:
        """Fill the in-flight window from the outbox while the link is up."""
        while self._link.connected and len(self._inflight) < self._window:
            rows = self._outbox.rows_after(self._cursor, max_bytes=self._max_batch_bytes)
            if not rows:
                return
            if len(rows) >= self._batch_min:
                chunk, payload = rows, batch_payload([row.payload for row in rows])
            else:
                chunk, payload = rows[:1], rows[0].payload
            mid = self._link.publish(self._topic, payload, qos=1)
            if mid is None:
                return
            self._inflight[mid] = InFlight(chunk[0].id, chunk[-1].id, len(chunk))
            self._cursor = chunk[-1].id
            if len(chunk) > 1:
                self.sent_batches += 1
                log.debug("replaying %d buffered samples in one batch", len(chunk))
            else:
                self.sent_singles += 1
