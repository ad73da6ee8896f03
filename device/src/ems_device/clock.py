"""Time as an I/O boundary, so tests can drive energy integration and expiry deterministically."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC: stamps samples, acks and expiry checks."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps: integrates energy and paces sampling."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()
