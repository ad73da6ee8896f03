"""The quality rules of one reading against its predecessor (pure; no state, no I/O).

Which reading is the predecessor is decided elsewhere (``quality.plan_batch``, against the
database inside the batch's transaction), so these rules stay exact however samples are
batched, split across workers or redelivered after a restart.

The planner runs these rules for every row the ingest stores, so they work on plain values
and on flag sets as bit masks (``FLAG_SETS[mask]`` is the canonical tuple), not on sets.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Protocol

from ems_platform.ingest.envelope import Flag

#: Flags that describe the reading itself (its arrival, its clock) and never change once
#: stored; every other flag is derived from the predecessor and is recomputed with it.
OWN_FLAGS = frozenset({Flag.OUT_OF_ORDER.value, Flag.FUTURE_TIMESTAMP.value})
_ORDER = {flag.value: n for n, flag in enumerate(Flag)}

#: One bit per flag, in the canonical order (the order of ``Flag``).
BITS = {flag.value: 1 << n for n, flag in enumerate(Flag)}
FIRST_READING = BITS[Flag.FIRST_READING.value]
COUNTER_RESET = BITS[Flag.COUNTER_RESET.value]
OUT_OF_ORDER = BITS[Flag.OUT_OF_ORDER.value]
SUSPICIOUS_JUMP = BITS[Flag.SUSPICIOUS_JUMP.value]
FUTURE_TIMESTAMP = BITS[Flag.FUTURE_TIMESTAMP.value]
GAP = BITS[Flag.GAP.value]
OWN_BITS = {flag: BITS[flag] for flag in OWN_FLAGS}
#: The canonical flag tuple of every mask: what ``ordered`` gives for that set of flags.
FLAG_SETS: tuple[tuple[str, ...], ...] = tuple(
    tuple(flag.value for flag in Flag if mask & BITS[flag.value]) for mask in range(1 << len(Flag))
)


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
    if not flags:
        return ()
    if len(flags) == 1:
        return tuple(flags)
    return _sorted_flags(frozenset(flags))


@lru_cache(maxsize=256)
def _sorted_flags(flags: frozenset[str]) -> tuple[str, ...]:
    return tuple(sorted(flags, key=lambda f: (_ORDER.get(f, len(_ORDER)), f)))


class Stamp(Protocol):
    """Where a reading sits: a ``Point`` or a ``ReadingRow``."""

    @property
    def ts(self) -> datetime: ...

    @property
    def boot(self) -> str: ...

    @property
    def seq(self) -> int: ...


def step(
    previous: Stamp, previous_energy: float, current: Stamp, energy: float, max_kw: float
) -> tuple[float | None, int]:
    """Delta and derived flags (a mask) of ``current`` given the reading just before it by
    ``ts``. The planner calls this for every row it plans, so it takes rows as they are;
    ``quality.plan_batch`` has a copy inlined for its in-order rows (change both together:
    tests/platform/test_quality_plan.py holds the planner to the reference)."""
    flags = GAP if current.boot == previous.boot and current.seq > previous.seq + 1 else 0
    if energy < previous_energy:
        # A lower counter means the meter was reset or replaced, whatever boot says.
        return None, flags | COUNTER_RESET
    delta = energy - previous_energy
    hours = (current.ts - previous.ts).total_seconds() / 3600
    if hours > 0 and delta / hours > max_kw:
        flags |= SUSPICIOUS_JUMP
    return delta, flags


def derive(previous: Point | None, current: Point, rules: QualityRules) -> Delta:
    """Delta and derived flags of ``current`` given the reading just before it by ``ts``."""
    if previous is None:
        return Delta(None, FLAG_SETS[FIRST_READING])
    delta, flags = step(previous, previous.energy_kwh, current, current.energy_kwh, rules.max_kw)
    return Delta(delta, FLAG_SETS[flags])


def own_flags(ts: datetime, received_at: datetime, *, late: bool, rules: QualityRules) -> set[str]:
    flags = set()
    if late:
        flags.add(Flag.OUT_OF_ORDER.value)
    if ts > received_at + rules.clock_skew:
        flags.add(Flag.FUTURE_TIMESTAMP.value)
    return flags
