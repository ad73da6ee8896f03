"""Garbage-collector settings for a process that allocates hundreds of thousands of short-lived
objects a second (the ingest: rows, envelopes, tuples for COPY).

CPython's default generation-0 threshold (700 allocations) runs a collection every few
messages, and each older-generation pass walks every object still alive, including the batch
being filled and the one being committed: under load py-spy charged a visible share of the
ingest's CPU to object construction that was really collection. Nearly all of these objects
die by reference counting, not by the cycle collector. So: freeze what start-up created (the
collector never walks it again) and collect generation 0 every 50,000 allocations instead.
Cycles (asyncio tracebacks and the like) are still collected, only in larger steps.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

GEN0_THRESHOLD = 50_000
GEN1_THRESHOLD = 20
GEN2_THRESHOLD = 100


def tune_for_throughput() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(GEN0_THRESHOLD, GEN1_THRESHOLD, GEN2_THRESHOLD)
    log.debug(
        "gc: %d start-up objects frozen, thresholds %s", gc.get_freeze_count(), gc.get_threshold()
    )
