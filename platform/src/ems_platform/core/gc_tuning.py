"""Garbage-collector settings for a process that allocates hundreds of thousands of short-lived
objects a second (the ingest: rows, envelopes, tuples for COPY).

Nearly all of these objects die by reference counting, not by the cycle collector, but the
collector does not know that: every object that survives a young collection is walked
again, and the rows of the batch being filled and of the batches waiting for their commit
all survive several. With CPython's default thresholds (a collection every 700 allocations)
that was a visible share of the ingest's CPU; with a generation-0 threshold of 50,000 it was
still about a tenth of it (measured with ``gc.callbacks`` under the ingest benchmark: 2.6 s
of collections in 31 s at 0.76 cores busy).

So the ingest process freezes what start-up created (the collector never walks it again),
turns automatic collection off, and collects on a schedule instead (``Collector``): every
``interval`` seconds, or sooner once ``young_limit`` more container objects are alive than
after the last collection. Cycles (asyncio tracebacks and the like) are still collected,
only in larger steps (the ingest creates almost none: 0-15 per collection under load). A
full collection walks what is alive at that moment and pauses the event loop meanwhile:
about 0.6 s under full load with three 50,000-row batches in memory, hence once a minute by
default; at ordinary rates the batches are small and so is the pause.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

log = logging.getLogger(__name__)

#: A collection that pauses the event loop longer than this is logged as a warning.
SLOW_COLLECTION_S = 2.0


def tune_for_throughput() -> None:
    """Freeze start-up objects and leave collecting to a ``Collector``."""
    gc.collect()
    gc.freeze()
    gc.disable()
    log.debug("gc: %d start-up objects frozen, automatic collection off", gc.get_freeze_count())


class Collector:
    """Runs ``gc.collect()`` on a schedule while automatic collection is off.

    ``young_limit`` is checked every ``check_every`` seconds against ``gc.get_count()[0]``:
    the container objects allocated and not yet freed since the last collection.
    """

    def __init__(self, *, interval: float, young_limit: int, check_every: float = 1.0) -> None:
        self.interval = interval
        self.young_limit = young_limit
        self.check_every = min(check_every, interval)
        self.collections = 0
        self.collected = 0
        self.seconds = 0.0

    def collect(self) -> int:
        started = time.perf_counter()
        found = gc.collect()
        took = time.perf_counter() - started
        self.collections += 1
        self.collected += found
        self.seconds += took
        level = logging.WARNING if took > SLOW_COLLECTION_S else logging.DEBUG
        log.log(level, "gc: collected %d unreachable objects in %.1f ms", found, took * 1000)
        return found

    async def run(self) -> None:
        """Collect until cancelled."""
        last = time.monotonic()
        while True:
            await asyncio.sleep(self.check_every)
            if gc.isenabled():
                last = time.monotonic()  # someone turned it back on: nothing to do
                continue
            if time.monotonic() - last >= self.interval or gc.get_count()[0] >= self.young_limit:
                self.collect()
                last = time.monotonic()
