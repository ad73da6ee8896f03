"""An in-memory ReadingStore for tests and demos, with switchable failures."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime

from ems_platform.ingest.deltas import QualityRules
from ems_platform.ingest.envelope import Envelope, ReadingRow, Verdict
from ems_platform.ingest.quality import plan_batch, series_of
from ems_platform.ingest.store import BatchRejectedError, StoreUnavailableError


class MemoryReadingStore:
    """Same semantics as the database: unique (device, phase, ts), one verdict per message,
    the same quality plan (given every stored row of the series, not just the neighbours).

    ``unavailable`` makes every write fail as a transient error until it is cleared;
    ``poison`` names topics whose messages the "database" refuses outright.
    """

    def __init__(self, rules: QualityRules | None = None) -> None:
        self.readings: dict[tuple[str, str, datetime], ReadingRow] = {}
        self.events: list[tuple[Envelope, Verdict]] = []
        self.unavailable = False
        self.poison: set[str] = set()
        self.attempts = 0
        self.commits = 0
        self.changed = asyncio.Event()
        self._rules = rules or QualityRules()

    async def write(self, batch: Sequence[Envelope]) -> list[int]:
        self.attempts += 1
        if self.unavailable:
            raise StoreUnavailableError("store is switched off")
        if any(env.incoming.topic in self.poison and env.rows for env in batch):
            raise BatchRejectedError("poisoned topic in batch")
        series = set(series_of(batch))
        context = [r for r in self.readings.values() if (r.device_id, r.phase) in series]
        plan = plan_batch(batch, context, self._rules)
        stored = [0] * len(batch)
        for msg, _, row in plan.inserts:
            self.readings[row.key] = row
            stored[msg] += 1
        for row in plan.updates:
            self.readings[row.key] = row
        for envelope, conflicts, count in zip(batch, plan.conflicts, stored, strict=True):
            envelope.conflicts = conflicts
            self.events.append((envelope, envelope.verdict(count)))
        self.commits += 1
        self.changed.set()
        return stored
