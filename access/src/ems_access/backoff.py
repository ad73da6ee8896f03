"""Capped, jittered exponential backoff for reconnect loops."""

from __future__ import annotations

import random


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): full jitter, capped.

    Full jitter spreads the reconnects of many processes after a database restart instead
    of having them all knock at the same instant.
    """
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return random.uniform(0.0, ceiling)
