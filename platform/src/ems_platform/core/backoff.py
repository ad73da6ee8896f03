"""Capped, jittered exponential backoff for reconnects and write retries."""

from __future__ import annotations

import asyncio
import random


class Backoff:
    """Full jitter: each delay is uniform in [0, min(cap, base * 2**attempt)].

    Jitter keeps many clients from reconnecting in lockstep after a broker or database restart.
    """

    def __init__(self, *, base: float = 0.2, cap: float = 30.0) -> None:
        if base <= 0 or cap <= 0:
            raise ValueError("backoff needs a positive base and cap")
        self.base = min(base, cap)
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt = min(self.attempt + 1, 32)
        return random.uniform(0, ceiling)

    async def sleep(self) -> None:
        await asyncio.sleep(self.next_delay())

    def reset(self) -> None:
        self.attempt = 0
