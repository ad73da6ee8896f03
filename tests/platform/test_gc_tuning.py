"""The ingest's scheduled garbage collection: with automatic collection off, ``Collector``
still frees reference cycles, on its interval or once enough young objects pile up."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from ems_platform.core.gc_tuning import Collector
from ems_platform.ingest.metrics import IngestMetrics


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    """A two-object reference cycle nobody else refers to; only the collector can free it."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def gc_off() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def test_collect_frees_cycles_that_automatic_collection_no_longer_frees(gc_off: None) -> None:
    ref = cycle()
    junk: list[list[int]] = [[] for _ in range(50_000)]  # enough for an automatic run
    del junk
    assert ref() is not None, "automatic collection should be off"
    collector = Collector(interval=60, young_limit=10**9)
    assert collector.collect() >= 2
    assert ref() is None
    assert collector.collections == 1


async def _until(predicate: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


async def test_run_collects_on_its_interval(gc_off: None) -> None:
    collector = Collector(interval=0.05, young_limit=10**9, check_every=0.01)
    ref = cycle()
    task = asyncio.create_task(collector.run())
    try:
        await _until(lambda: ref() is None)
    finally:
        task.cancel()
    assert collector.collections >= 1


async def test_run_collects_early_once_young_objects_pile_up(gc_off: None) -> None:
    collector = Collector(interval=3600, young_limit=20_000, check_every=0.01)
    task = asyncio.create_task(collector.run())
    try:
        await asyncio.sleep(0.05)
        assert collector.collections == 0  # neither the interval nor the limit reached
        ref = cycle()
        kept: list[list[int]] = [[] for _ in range(30_000)]  # alive young objects
        await _until(lambda: ref() is None)
        del kept
    finally:
        task.cancel()
    assert collector.collections >= 1


async def test_run_leaves_automatic_collection_alone() -> None:
    assert gc.isenabled()
    collector = Collector(interval=0.01, young_limit=1000, check_every=0.01)
    task = asyncio.create_task(collector.run())
    try:
        await asyncio.sleep(0.1)
    finally:
        task.cancel()
    assert collector.collections == 0


def test_metrics_read_the_collectors_totals(gc_off: None) -> None:
    metrics = IngestMetrics(CollectorRegistry())
    collector = Collector(interval=60, young_limit=10**9)
    metrics.track_gc(collector)
    assert metrics.value("ems_ingest_gc_collections") == 0
    collector.collect()
    collector.collect()
    assert metrics.value("ems_ingest_gc_collections") == 2
    assert metrics.value("ems_ingest_gc_pause_seconds") == collector.seconds > 0
