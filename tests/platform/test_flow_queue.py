"""The ingest's message queue: whole reads in and out at once, with the watermarks that pause
and resume socket reads (pure logic on asyncio's queue; the reads themselves are tested over
a real broker in test_ingest_mqtt.py)."""

from __future__ import annotations

import asyncio

from ems_platform.ingest.flow_client import FlowQueue
from ems_platform.ingest.packet_reader import Delivered


def _messages(start: int, count: int) -> list[Delivered]:
    return [
        Delivered("ems/d/telemetry", b"%d" % i, 1, i, False) for i in range(start, start + count)
    ]


def _queue(high: int, low: int) -> tuple[FlowQueue, list[str]]:
    queue = FlowQueue()
    queue.high_water, queue.low_water = high, low
    events: list[str] = []
    queue.on_high = lambda: events.append(f"high@{queue.qsize()}")
    queue.on_low = lambda: events.append(f"low@{queue.qsize()}")
    return queue, events


async def test_put_many_and_take_many_keep_order_and_report_the_watermarks() -> None:
    queue, events = _queue(high=10, low=5)
    queue.put_many(_messages(0, 4))
    assert events == []
    queue.put_many(_messages(4, 8))  # 12 >= 10
    assert events == ["high@12"] and queue.qsize() == 12
    queue.put_many([])
    assert queue.take_many(3) == _messages(0, 3) and events == ["high@12"]
    assert queue.take_many(5) == _messages(3, 5)
    assert events == ["high@12", "low@4"]
    assert queue.take_many(100) == _messages(8, 4)
    assert queue.take_many(100) == [] and queue.take_many(0) == []
    assert events == ["high@12", "low@4", "low@0"]


async def test_put_many_mixes_with_the_single_item_calls() -> None:
    queue, _ = _queue(high=100, low=0)
    queue.put_nowait(_messages(0, 1)[0])
    queue.put_many(_messages(1, 3))
    assert queue.get_nowait() == _messages(0, 1)[0]
    assert queue.take_many(2) == _messages(1, 2)
    assert await queue.get() == _messages(3, 1)[0]
    assert queue.empty()


async def test_put_many_wakes_a_waiting_reader() -> None:
    queue, _ = _queue(high=100, low=0)
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.put_many(_messages(0, 3))
    assert await asyncio.wait_for(waiting, 1) == _messages(0, 1)[0]
    assert queue.take_many(10) == _messages(1, 2)
