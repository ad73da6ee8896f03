"""Reads the meter every ``interval`` seconds and appends a contract sample to the outbox.

It never touches the network: a dead broker only makes the outbox grow. Ticks are paced on
the loop's monotonic clock; a tick missed because a read ran long is skipped, not made up,
and ``seq`` still grows by exactly one per stored sample.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable

from pydantic import ValidationError

from ems_contract import Sample, encode
from ems_device.clock import Clock
from ems_device.meter.base import Meter, MeterError
from ems_device.outbox import Outbox

log = logging.getLogger(__name__)


class Sampler:
    def __init__(
        self,
        meter: Meter,
        outbox: Outbox,
        clock: Clock,
        boot: str,
        interval: float,
        on_sample: Callable[[], None] | None = None,
    ) -> None:
        self._meter = meter
        self._outbox = outbox
        self._clock = clock
        self.boot = boot
        self._interval = interval
        self._on_sample = on_sample
        #: The seq of the next sample; samples of one boot are numbered 0, 1, 2, ...
        self.next_seq = 0
        self._changed = asyncio.Event()

    @property
    def interval(self) -> float:
        return self._interval

    def set_interval(self, seconds: float) -> None:
        self._interval = seconds
        self._changed.set()
        log.info("sampling interval set to %.3f s", seconds)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            delay = due - loop.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=delay)
                except TimeoutError:
                    pass
                else:
                    self._changed.clear()
                    due = min(due, loop.time() + self._interval)
                    continue
            await self.sample_once()
            due += self._interval
            if due < loop.time():
                due = loop.time() + self._interval

    async def sample_once(self) -> bool:
        """Take and store one sample; False (and nothing stored) if that failed."""
        ts = self._clock.now()
        try:
            reading = await asyncio.to_thread(self._meter.read)
            sample = Sample(v=1, ts=ts, seq=self.next_seq, boot=self.boot, phases=reading)
        except (MeterError, ValidationError) as exc:
            log.warning("meter reading skipped: %s", exc)
            return False
        try:
            self._outbox.append(encode(sample), ts.timestamp())
        except sqlite3.Error as exc:
            log.error("cannot store sample %d in the outbox: %s", self.next_seq, exc)
            return False
        self.next_seq += 1
        if self._on_sample is not None:
            self._on_sample()
        return True
