"""Capped exponential backoff with full jitter, so a fleet of devices does not reconnect in step."""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self, minimum: float = 0.5, maximum: float = 30.0, rng: random.Random | None = None
    ) -> None:
        if not 0 < minimum <= maximum:
            raise ValueError("backoff needs 0 < minimum <= maximum")
        self._minimum = minimum
        self._maximum = maximum
        self._attempt = 0
        self._rng = rng or random.Random()

    def next_delay(self) -> float:
        """The wait before the next attempt: uniform in [minimum/2, cap], cap doubling per try."""
        cap = min(self._maximum, self._minimum * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 32)
        return self._rng.uniform(min(self._minimum / 2, cap), cap)

    def reset(self) -> None:
        self._attempt = 0
