"""Store-and-forward: every sample lands in SQLite first and leaves only after its PUBACK.

Rows are keyed by an AUTOINCREMENT id, so ids only grow (even after the table empties) and
"oldest first" is simply "lowest id first". The publisher keeps an in-memory cursor of what
it has handed to MQTT; after a restart the cursor starts at zero and everything still here
is sent again (the platform's unique key makes a resend a counted duplicate, never a double).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ems_contract import MAX_BATCH_BYTES, MAX_BATCH_SAMPLES
from ems_device.db import DeviceDb

log = logging.getLogger(__name__)

BATCH_PREFIX = b'{"v":1,"samples":['
BATCH_SUFFIX = b"]}"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    created_at: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class PruneResult:
    expired: int
    overflow: int


def batch_payload(payloads: list[bytes]) -> bytes:
    """A contract batch ``{"v":1,"samples":[...]}`` from already-encoded samples."""
    return BATCH_PREFIX + b",".join(payloads) + BATCH_SUFFIX


class Outbox:
    def __init__(self, db: DeviceDb) -> None:
        self._db = db
        # Counting a large table every second is wasteful; keep the count beside it.
        self._count = int(db.query("SELECT count(*) FROM outbox")[0][0])

    def __len__(self) -> int:
        return self._count

    def append(self, payload: bytes, created_at: float) -> int:
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT INTO outbox (created_at, payload) VALUES (?, ?)", (created_at, payload)
            )
            self._count += 1
            return int(cursor.lastrowid or 0)

    def rows_after(
        self,
        after_id: int,
        max_rows: int = MAX_BATCH_SAMPLES,
        max_bytes: int = MAX_BATCH_BYTES,
    ) -> list[OutboxRow]:
        """The oldest rows after ``after_id`` that fit in one contract batch (at least one)."""
        budget = max_bytes - len(BATCH_PREFIX) - len(BATCH_SUFFIX)
        rows: list[OutboxRow] = []
        with self._db.reading() as conn:
            cursor = conn.execute(
                "SELECT id, created_at, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, max_rows),
            )
            for row_id, created_at, payload in cursor:
                cost = len(payload) + (1 if rows else 0)
                if rows and cost > budget:
                    break
                budget -= cost
                rows.append(OutboxRow(int(row_id), float(created_at), bytes(payload)))
            cursor.close()
        return rows

    def delete_range(self, first_id: int, last_id: int) -> int:
        """Forget rows the broker acknowledged (a batch covers a contiguous id range)."""
        with self._db.transaction() as conn:
            deleted = conn.execute(
                "DELETE FROM outbox WHERE id BETWEEN ? AND ?", (first_id, last_id)
            ).rowcount
            self._count -= deleted
            return int(deleted)

    def oldest_created_at(self) -> float | None:
        rows = self._db.query("SELECT min(created_at) FROM outbox")
        return None if rows[0][0] is None else float(rows[0][0])

    def prune(self, now: float, retention_s: float, max_rows: int) -> PruneResult:
        """Drop samples older than the retention and the oldest beyond ``max_rows``.

        Data is lost here on purpose: an outage longer than the retention would otherwise
        fill the SD card and stop the agent altogether.
        """
        with self._db.transaction() as conn:
            expired = conn.execute(
                "DELETE FROM outbox WHERE created_at < ?", (now - retention_s,)
            ).rowcount
            self._count -= expired
            overflow = 0
            if self._count > max_rows:
                overflow = conn.execute(
                    "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)",
                    (self._count - max_rows,),
                ).rowcount
                self._count -= overflow
        if expired:
            log.warning(
                "pruned %d unsent samples older than %.1f days from the outbox",
                expired,
                retention_s / 86400,
            )
        if overflow:
            log.warning(
                "pruned %d oldest unsent samples: the outbox is capped at %d rows",
                overflow,
                max_rows,
            )
        if expired or overflow:
            self._db.vacuum_free_pages()
        return PruneResult(int(expired), int(overflow))
