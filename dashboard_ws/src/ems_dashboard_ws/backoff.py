"""Capped exponential backoff with jitter, so a fleet of adapters does not reconnect in step."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    attempt: int = field(default=0, init=False)

    def next_delay(self) -> float:
        """Equal jitter: half the capped delay is fixed, the other half random."""
        ceiling = min(self.maximum, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0
