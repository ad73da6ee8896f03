"""Collect envelopes into batches and commit them: at N rows or after T ms, whichever first.

A batch is committed as ``lanes`` transactions at once (``split_lanes``: no device in two,
each part in arrival order) and acknowledged, in arrival order, once all of them have: the
database gets one backend per lane to work with, and the broker still sees PUBACKs in the
order it sent the messages.

Memory stays bounded: while a batch is being committed (or retried because the database is
down) up to ``LOOKAHEAD`` more fill up to the same size, then ``add`` waits. That wait is the
backpressure that eventually pauses the MQTT reader.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import zlib
from collections.abc import Callable, Sequence

from ems_contract.backoff import Backoff
from ems_platform.ingest.envelope import AckHandle, Envelope, Problem
from ems_platform.ingest.metrics import IngestMetrics
from ems_platform.ingest.store import BatchRejectedError, ReadingStore, StoreUnavailableError

log = logging.getLogger(__name__)

STORE_REJECTED = "store_rejected"
#: Full batches that may wait behind the one being committed. With one, the reader stopped
#: as soon as the next batch was full and sat idle while the database worked; with two it
#: keeps reading and judging meanwhile, and the next commit still takes one batch.
LOOKAHEAD = 2

#: Called with the ack handles of messages whose transaction has committed (or which were
#: given up as unrecordable), in arrival order; only then may they be acked to the broker.
OnCommitted = Callable[[Sequence[AckHandle]], None]


def _no_acks(handles: Sequence[AckHandle]) -> None:
    del handles


def quarantined(envelope: Envelope, error: str) -> Envelope:
    """The audit row alone, for a message whose data the database refused."""
    problem = Problem(STORE_REJECTED, error.replace("\x00", "")[:1000])
    return Envelope(
        envelope.incoming,
        envelope.kind,
        envelope.device_id,
        problems=[problem, *envelope.problems],
    )


@functools.lru_cache(maxsize=65536)
def _lane_hash(device_id: str) -> int:
    """Stable across processes and restarts (``hash`` of a str is not)."""
    return zlib.crc32(device_id.encode())


def split_lanes(batch: Sequence[Envelope], lanes: int) -> list[Sequence[Envelope]]:
    """The batch in up to ``lanes`` parts with no device in two, each in arrival order."""
    if lanes <= 1:
        return [batch]
    parts: list[list[Envelope]] = [[] for _ in range(lanes)]
    for envelope in batch:
        device = envelope.device_id
        parts[0 if device is None else _lane_hash(device) % lanes].append(envelope)
    return [part for part in parts if part]


class BatchWriter:
    def __init__(
        self,
        store: ReadingStore,
        metrics: IngestMetrics,
        *,
        max_rows: int,
        flush_interval: float,
        retry_cap: float = 30.0,
        on_committed: OnCommitted = _no_acks,
        lanes: int = 1,
    ) -> None:
        self._lanes = lanes
        self._store = store
        self.on_committed = on_committed
        self._metrics = metrics
        self._max_rows = max_rows
        self._interval = flush_interval
        self._retry_cap = retry_cap
        self._pending: list[Envelope] = []
        self._rows = 0
        self._first_at = 0.0
        self._changed = asyncio.Condition()
        #: Lanes whose last write attempt failed.
        self._failing = 0
        self._closing = False
        self.committed_batches = 0

    @property
    def healthy(self) -> bool:
        """False while the last write attempt of any lane failed."""
        return self._failing == 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def add(self, envelope: Envelope) -> None:
        await self.add_many((envelope,))

    async def add_many(self, envelopes: Sequence[Envelope]) -> None:
        """Queue envelopes in order; waits whenever ``LOOKAHEAD`` batches are waiting."""
        limit = self._max_rows * LOOKAHEAD
        async with self._changed:
            for envelope in envelopes:
                if self._rows >= limit:
                    self._changed.notify_all()
                    await self._changed.wait_for(lambda: self._rows < limit)
                if not self._pending:
                    self._first_at = time.monotonic()
                self._pending.append(envelope)
                self._rows += envelope.weight
            self._changed.notify_all()

    async def run(self) -> None:
        """Commit batches until ``close``, then commit what is left and return."""
        while True:
            batch = await self._next_batch()
            if batch:
                await self._commit(batch)
            elif self._closing:
                return

    def reset(self) -> None:
        """Forget what is pending, for a restart after a failure: none of it was acked, so the
        broker delivers it again on the next connection."""
        self._pending, self._rows, self._closing = [], 0, False

    async def close(self) -> None:
        """No more waiting for full batches: commit the rest now and let ``run`` end."""
        async with self._changed:
            self._closing = True
            self._changed.notify_all()

    async def flush(self) -> None:
        """Commit whatever is pending now, one batch after another (used by tests)."""
        while True:
            async with self._changed:
                batch = self._take()
            if not batch:
                return
            await self._commit(batch)

    def _take(self) -> list[Envelope]:
        """The next batch: everything pending, or its first ``max_rows`` rows' worth."""
        if self._rows <= self._max_rows:
            batch, self._pending, self._rows = self._pending, [], 0
        else:
            taken = count = 0
            for envelope in self._pending:
                if taken >= self._max_rows:
                    break
                taken += envelope.weight
                count += 1
            batch, self._pending = self._pending[:count], self._pending[count:]
            self._rows -= taken
            # The rest waits for the next batch to fill, or for its own flush interval.
            self._first_at = time.monotonic()
        self._changed.notify_all()
        return batch

    async def _next_batch(self) -> list[Envelope]:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self._pending) or self._closing)
            while self._rows < self._max_rows and not self._closing:
                remaining = self._first_at + self._interval - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()
                except TimeoutError:
                    break
            return self._take()

    async def _commit(self, batch: Sequence[Envelope]) -> None:
        """Commit a batch (as one transaction per lane, at once), then ack it in order."""
        parts = split_lanes(batch, self._lanes)
        if len(parts) == 1:
            await self._commit_part(parts[0])
        else:
            lanes = [asyncio.ensure_future(self._commit_part(part)) for part in parts]
            try:
                await asyncio.gather(*lanes)
            except BaseException:
                # A bug in one lane (outages and refusals are handled inside): stop the
                # others before the error ends the writer, so none keeps writing unseen.
                for lane in lanes:
                    lane.cancel()
                await asyncio.gather(*lanes, return_exceptions=True)
                raise
        self.committed_batches += 1
        self._acknowledge(batch)

    async def _commit_part(self, batch: Sequence[Envelope]) -> None:
        """One lane's transaction: retried until it lands, split if the database refuses it."""
        backoff: Backoff | None = None  # set while this part is failing
        try:
            while True:
                started = time.monotonic()
                try:
                    stored = await self._store.write(batch)
                except StoreUnavailableError as exc:
                    self._metrics.write_failures.inc()
                    if backoff is None:
                        backoff = Backoff(base=0.1, cap=self._retry_cap)
                        self._failing += 1
                        if self._failing == 1:
                            log.warning(
                                "database write failed, keeping %d messages and retrying: %s",
                                len(batch),
                                exc,
                            )
                    await backoff.sleep()
                    continue
                except BatchRejectedError as exc:
                    self._answered(backoff)
                    backoff = None
                    await self._split(batch, exc)
                    return
                self._answered(backoff)
                backoff = None
                self._metrics.committed(batch, stored, time.monotonic() - started)
                return
        finally:
            if backoff is not None:  # cancelled (shutdown) while failing
                self._failing -= 1

    def _answered(self, backoff: Backoff | None) -> None:
        """The database answered this part; if it had been failing, one lane fewer is."""
        if backoff is not None:
            self._failing -= 1
            if self._failing == 0:
                log.info("database writes recovered")

    def _acknowledge(self, batch: Sequence[Envelope]) -> None:
        handles = [env.incoming.ack for env in batch if env.incoming.ack is not None]
        if handles:
            self.on_committed(handles)

    async def _split(self, batch: Sequence[Envelope], exc: BatchRejectedError) -> None:
        """Find the poison message by committing one at a time; quarantine it, keep the rest."""
        if len(batch) > 1:
            log.warning("database refused a batch of %d; retrying one by one", len(batch))
            for envelope in batch:
                await self._commit_part([envelope])
            return
        envelope = batch[0]
        log.error(
            "database refused a message on %s; quarantining it: %s", envelope.incoming.topic, exc
        )
        if envelope.problems and envelope.problems[0].reason == STORE_REJECTED:
            # Even the bare audit row was refused; nothing more can be kept of it.
            log.error("dropping a message the database refuses to record at all")
            # Redelivery could only fail the same way; the batch's ack lets the broker forget it.
            return
        await self._commit_part([quarantined(envelope, str(exc))])
