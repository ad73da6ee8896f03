"""Capped exponential backoff with full jitter, for every reconnect and retry loop in EMS.

It lives beside the wire contract because it is the one package that every component,
the Pi agent included, already depends on. Full jitter (each delay uniform in
[0, min(cap, base * 2**attempt)]) keeps a fleet of devices or services from reconnecting in
lockstep after a broker or database restart.
"""

from __future__ import annotations

import asyncio
import random


class Backoff:
    def __init__(
        self, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None
    ) -> None:
        if base <= 0 or cap <= 0:
            raise ValueError("backoff needs a positive base and cap")
        self.base = min(base, cap)
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempt, 32)))
        self.attempt += 1
        return self._rng.uniform(0.0, ceiling)

    async def sleep(self) -> None:
        await asyncio.sleep(self.next_delay())

    def reset(self) -> None:
        self.attempt = 0
