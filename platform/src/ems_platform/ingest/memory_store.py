"""An in-memory ReadingStore for tests and demos, with switchable failures."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from ems_platform.ingest.deltas import Previous
from ems_platform.ingest.envelope import Envelope, ReadingRow, Verdict
from ems_platform.ingest.store import BatchRejectedError, StoreUnavailableError


class MemoryReadingStore:
    """Same semantics as the database: unique (device, phase, ts), one verdict per message.

    ``unavailable`` makes every write fail as a transient error until it is cleared;
    ``poison`` names topics whose messages the "database" refuses outright.
    """

    def __init__(self) -> None:
        self.readings: dict[tuple[str, str, datetime], ReadingRow] = {}
        self.events: list[tuple[Envelope, Verdict]] = []
        self.unavailable = False
        self.poison: set[str] = set()
        self.attempts = 0
        self.commits = 0
        self.changed = asyncio.Event()

    async def write(self, batch: Sequence[Envelope]) -> list[int]:
        self.attempts += 1
        if self.unavailable:
            raise StoreUnavailableError("store is switched off")
        if any(env.incoming.topic in self.poison and env.rows for env in batch):
            raise BatchRejectedError("poisoned topic in batch")
        stored = []
        for envelope in batch:
            count = 0
            for row in envelope.rows:
                if row.key not in self.readings:
                    self.readings[row.key] = row
                    count += 1
            stored.append(count)
            self.events.append((envelope, envelope.verdict(count)))
        self.commits += 1
        self.changed.set()
        return stored

    async def latest(self, device_id: str) -> dict[str, Previous]:
        if self.unavailable:
            raise StoreUnavailableError("store is switched off")
        latest: dict[str, Previous] = {}
        for (dev, phase, ts), row in self.readings.items():
            if dev == device_id and (phase not in latest or ts > latest[phase].ts):
                latest[phase] = Previous(ts, row.values[-1], row.boot, row.seq)
        return latest
