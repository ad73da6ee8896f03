"""Plan a batch against what is stored: new, duplicate or conflicting rows, their deltas and
flags, and the stored rows whose predecessor a late arrival changes.

The store calls this inside the batch's transaction, holding each device's lock, with the
stored rows that can matter (``context_keys`` says which): per device/phase the newest one,
and around every row not newer than it, the stored row at or before it and the one after
it. Given those, the predecessor of every new row in the merged, ts-ordered timeline is its
true predecessor, so the result is the same as recomputing the whole series.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ems_contract import MEASUREMENTS
from ems_platform.ingest.deltas import OWN_FLAGS, Point, QualityRules, derive, ordered, own_flags
from ems_platform.ingest.envelope import Envelope, Problem, ReadingRow

CONFLICT = "conflict"

Series = tuple[str, str]
Key = tuple[str, str, datetime]


@dataclass(slots=True)
class Plan:
    #: (message index, row index, row with delta and flags), in arrival order.
    inserts: list[tuple[int, int, ReadingRow]] = field(default_factory=list)
    #: Stored rows whose delta or derived flags change, with their new values.
    updates: list[ReadingRow] = field(default_factory=list)
    #: Per message, the rows refused because their key is stored with other values.
    conflicts: list[list[Problem]] = field(default_factory=list)


def series_of(batch: Sequence[Envelope]) -> list[Series]:
    return sorted({(row.device_id, row.phase) for env in batch for row in env.rows})


def context_keys(batch: Sequence[Envelope], newest: Mapping[Series, datetime]) -> list[Key]:
    """Rows of the batch not newer than their series' newest stored row: around these the
    store must also fetch the neighbours (and any stored row with the same key)."""
    keys = {
        row.key
        for env in batch
        for row in env.rows
        if (row.device_id, row.phase) in newest and row.ts <= newest[(row.device_id, row.phase)]
    }
    return sorted(keys)


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
        CONFLICT,
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

    # Arrival order decides what is late: a row older than anything stored or accepted
    # before it in this batch, exactly as if each message had been its own transaction.
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
    """Walk one series in ts order, taking each new row's delta against the row before it and
    recomputing a stored row whose predecessor is now a new row."""
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
