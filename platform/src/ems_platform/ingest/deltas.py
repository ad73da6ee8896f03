"""The quality rules of one reading against its predecessor (pure; no state, no I/O).

Which reading is the predecessor is decided elsewhere (``quality.plan_batch``, against the
database inside the batch's transaction), so these rules stay exact however samples are
batched, split across workers or redelivered after a restart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from ems_platform.ingest.envelope import Flag

#: Flags that describe the reading itself (its arrival, its clock) and never change once
#: stored; every other flag is derived from the predecessor and is recomputed with it.
OWN_FLAGS = frozenset({Flag.OUT_OF_ORDER.value, Flag.FUTURE_TIMESTAMP.value})
_ORDER = {flag.value: n for n, flag in enumerate(Flag)}


@dataclass(frozen=True, slots=True)
class QualityRules:
    """Tolerances of the quality flags (``EMS_QUALITY_MAX_KW``, ``EMS_QUALITY_CLOCK_SKEW_S``).

    ``max_kw`` bounds the *average power* a counter step implies (kWh per hour between the
    two samples), not the step itself: a device that was offline for a day may legitimately
    report a large step, but no 3-phase meter draws 2 MW.
    """

    max_kw: float = 2000.0
    clock_skew_s: float = 300.0

    @property
    def clock_skew(self) -> timedelta:
        return timedelta(seconds=self.clock_skew_s)


@dataclass(frozen=True, slots=True)
class Point:
    """What the rules look at in a reading."""

    ts: datetime
    energy_kwh: float
    boot: str
    seq: int


@dataclass(frozen=True, slots=True)
class Delta:
    energy_delta_kwh: float | None
    flags: tuple[str, ...]


def ordered(flags: set[str] | frozenset[str]) -> tuple[str, ...]:
    """Flags in one canonical order, so equal sets compare and store equal."""
    return tuple(sorted(flags, key=lambda f: (_ORDER.get(f, len(_ORDER)), f)))


def derive(previous: Point | None, current: Point, rules: QualityRules) -> Delta:
    """Delta and derived flags of ``current`` given the reading just before it by ``ts``."""
    if previous is None:
        return Delta(None, (Flag.FIRST_READING.value,))
    flags: set[str] = set()
    if current.boot == previous.boot and current.seq > previous.seq + 1:
        flags.add(Flag.GAP.value)
    if current.energy_kwh < previous.energy_kwh:
        # A lower counter means the meter was reset or replaced, whatever boot says.
        flags.add(Flag.COUNTER_RESET.value)
        return Delta(None, ordered(flags))
    delta = current.energy_kwh - previous.energy_kwh
    hours = (current.ts - previous.ts).total_seconds() / 3600
    if hours > 0 and delta / hours > rules.max_kw:
        flags.add(Flag.SUSPICIOUS_JUMP.value)
    return Delta(delta, ordered(flags))


def own_flags(ts: datetime, received_at: datetime, *, late: bool, rules: QualityRules) -> set[str]:
    flags = set()
    if late:
        flags.add(Flag.OUT_OF_ORDER.value)
    if ts > received_at + rules.clock_skew:
        flags.add(Flag.FUTURE_TIMESTAMP.value)
    return flags
