"""The quality planner as it was before it was made fast: straightforward and obviously
right, kept as the reference the fast one must match exactly (``test_quality_plan``).

Merges each series' stored and new rows, sorts them by ts, walks them with ``Point`` and
``Delta`` objects and flag sets, and builds each result with ``msgspec.structs.replace``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from msgspec.structs import replace

from ems_contract import MEASUREMENTS
from ems_platform.ingest.deltas import QualityRules
from ems_platform.ingest.envelope import Envelope, Flag, Problem, ReadingRow
from ems_platform.ingest.quality import Plan

Series = tuple[str, str]
Key = tuple[str, str, datetime]

OWN_FLAGS = frozenset({Flag.OUT_OF_ORDER.value, Flag.FUTURE_TIMESTAMP.value})
_ORDER = {flag.value: n for n, flag in enumerate(Flag)}


@dataclass(frozen=True, slots=True)
class Point:
    ts: datetime
    energy_kwh: float
    boot: str
    seq: int


@dataclass(frozen=True, slots=True)
class Delta:
    energy_delta_kwh: float | None
    flags: tuple[str, ...]


def ordered(flags: set[str] | frozenset[str]) -> tuple[str, ...]:
    return tuple(sorted(flags, key=lambda f: (_ORDER.get(f, len(_ORDER)), f)))


def derive(previous: Point | None, current: Point, rules: QualityRules) -> Delta:
    if previous is None:
        return Delta(None, (Flag.FIRST_READING.value,))
    flags: set[str] = set()
    if current.boot == previous.boot and current.seq > previous.seq + 1:
        flags.add(Flag.GAP.value)
    if current.energy_kwh < previous.energy_kwh:
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


def _point(row: ReadingRow) -> Point:
    return Point(row.ts, row.values[-1], row.boot, row.seq)


def _differences(stored: ReadingRow, received: ReadingRow) -> dict[str, dict[str, Any]]:
    pairs = [
        *zip(MEASUREMENTS, stored.values, received.values, strict=True),
        ("seq", stored.seq, received.seq),
        ("boot", stored.boot, received.boot),
    ]
    return {name: {"stored": a, "received": b} for name, a, b in pairs if a != b}


def _conflict(row: ReadingRow, differences: dict[str, dict[str, Any]]) -> Problem:
    ts = row.ts.isoformat()
    return Problem(
        "conflict",
        f"phase {row.phase} at {ts} is already stored with other {', '.join(differences)}",
        extra={
            "key": {"device_id": row.device_id, "phase": row.phase, "ts": ts},
            "fields": differences,
        },
    )


def plan_batch(
    batch: Sequence[Envelope], stored: Iterable[ReadingRow], rules: QualityRules
) -> Plan:
    plan = Plan()
    by_key: dict[Key, ReadingRow] = {}
    stored_by_series: dict[Series, list[ReadingRow]] = defaultdict(list)
    newest: dict[Series, datetime] = {}
    for row in stored:
        if row.key in by_key:
            continue
        by_key[row.key] = row
        series = (row.device_id, row.phase)
        stored_by_series[series].append(row)
        newest[series] = max(row.ts, newest.get(series, row.ts))

    fresh: dict[Series, list[tuple[int, int, ReadingRow, set[str]]]] = defaultdict(list)
    for msg, envelope in enumerate(batch):
        conflicts = []
        for ord_, row in enumerate(envelope.rows):
            existing = by_key.get(row.key)
            if existing is not None:
                differences = _differences(existing, row)
                if differences:
                    conflicts.append(_conflict(row, differences))
                continue
            by_key[row.key] = row
            series = (row.device_id, row.phase)
            high = newest.get(series)
            late = high is not None and row.ts < high
            if high is None or row.ts > high:
                newest[series] = row.ts
            flags = own_flags(row.ts, row.received_at, late=late, rules=rules)
            fresh[series].append((msg, ord_, row, flags))
        plan.conflicts.append(conflicts)

    for series, items in fresh.items():
        _timeline(plan, stored_by_series.get(series, []), items, rules)
    plan.inserts.sort(key=lambda item: (item[0], item[1]))
    return plan


def _timeline(
    plan: Plan,
    stored: list[ReadingRow],
    fresh: list[tuple[int, int, ReadingRow, set[str]]],
    rules: QualityRules,
) -> None:
    merged: list[tuple[datetime, ReadingRow, tuple[int, int, set[str]] | None]] = [
        (row.ts, row, None) for row in stored
    ]
    merged.extend((row.ts, row, (msg, ord_, flags)) for msg, ord_, row, flags in fresh)
    merged.sort(key=lambda item: item[0])
    previous: ReadingRow | None = None
    previous_is_new = False
    for _, row, new in merged:
        if new is not None:
            msg, ord_, own = new
            delta = derive(None if previous is None else _point(previous), _point(row), rules)
            row = replace(
                row,
                energy_delta_kwh=delta.energy_delta_kwh,
                flags=ordered(own | set(delta.flags)),
            )
            plan.inserts.append((msg, ord_, row))
        elif previous is not None and previous_is_new:
            delta = derive(_point(previous), _point(row), rules)
            flags = ordered((set(row.flags) & OWN_FLAGS) | set(delta.flags))
            if flags != tuple(row.flags) or delta.energy_delta_kwh != row.energy_delta_kwh:
                plan.updates.append(
                    replace(row, energy_delta_kwh=delta.energy_delta_kwh, flags=flags)
                )
        previous, previous_is_new = row, new is not None
