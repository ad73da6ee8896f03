"""Plan a batch against what is stored: new, duplicate or conflicting rows, their deltas and
flags, and the stored rows whose predecessor a late arrival changes.

The store calls this inside the batch's transaction, holding each device's lock, with the
stored rows that can matter (``context_keys`` says which): per device/phase the newest one,
and around every row not newer than it, the stored row at or before it and the one after
it. Given those, the predecessor of every new row in the merged, ts-ordered timeline is its
true predecessor, so the result is the same as recomputing the whole series.

This runs for every row the ingest stores, and under load nearly every series only grows:
each new row is newer than everything stored or accepted before it, so its predecessor is
simply the series' newest row so far, it cannot be a duplicate, and no stored row changes.
Such rows are planned as they arrive, in one pass. Only a row not newer than its series'
newest is looked up among the stored and accepted keys (duplicate, conflict), and a series
that accepts such a late row is planned again at the end, by merging and sorting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ems_contract import MEASUREMENTS
from ems_platform.ingest.deltas import (
    COUNTER_RESET,
    FIRST_READING,
    FLAG_SETS,
    FUTURE_TIMESTAMP,
    GAP,
    OUT_OF_ORDER,
    OWN_BITS,
    SUSPICIOUS_JUMP,
    QualityRules,
    step,
)
from ems_platform.ingest.envelope import Envelope, Flag, Problem, ReadingRow

CONFLICT = "conflict"

Series = tuple[str, str]
Key = tuple[str, str, datetime]


@dataclass(slots=True)
class Plan:
    #: (message index, row index, row), in arrival order. The row is the envelope's own,
    #: given its delta and flags by the planner (stored rows are never changed in place).
    inserts: list[tuple[int, int, ReadingRow]] = field(default_factory=list)
    #: Stored rows whose delta or derived flags change, with their new values.
    updates: list[ReadingRow] = field(default_factory=list)
    #: Per message, the rows refused because their key is stored with other values.
    conflicts: list[list[Problem]] = field(default_factory=list)
    #: Per series of the batch, its newest row stored or inserted (of equal keys the stored
    #: one, as ``updates`` may hold it with a new delta or flags). A by-product of planning,
    #: so not part of what two plans are compared by.
    newest: dict[Series, ReadingRow] = field(default_factory=dict, compare=False)
    #: Per series of the batch, the rows of ``inserts`` in arrival order: the COPY takes
    #: them series by series. Another by-product.
    by_series: dict[Series, list[ReadingRow]] = field(default_factory=dict, compare=False)


def oldest_per_series(batch: Sequence[Envelope]) -> dict[Series, datetime]:
    """Every series with rows in the batch, and the oldest ``ts`` it has there."""
    oldest: dict[Series, datetime] = {}
    get = oldest.get
    for env in batch:
        for row in env.rows:
            series = (row.device_id, row.phase)
            ts = row.ts
            low = get(series)
            if low is None or ts < low:
                oldest[series] = ts
    return oldest


def series_of(batch: Sequence[Envelope]) -> list[Series]:
    return sorted(oldest_per_series(batch))


def context_keys(
    batch: Sequence[Envelope],
    newest: Mapping[Series, ReadingRow | None],
    oldest: Mapping[Series, datetime] | None = None,
) -> list[Key]:
    """Rows of the batch not newer than their series' newest stored row (None: nothing
    stored): around these the store must also fetch the neighbours (and any stored row with
    the same key).

    With ``oldest`` (``oldest_per_series`` of the batch), only the series whose oldest row
    is not newer than the stored newest are looked at: under load none is, and the batch's
    rows need not be walked again."""
    if oldest is None:
        oldest = oldest_per_series(batch)
    late = set()
    for series, low in oldest.items():
        high = newest.get(series)
        if high is not None and low <= high.ts:
            late.add(series)
    if not late:
        return []
    keys = set()
    for env in batch:
        for row in env.rows:
            series = (row.device_id, row.phase)
            if series in late:
                high = newest[series]
                if high is not None and row.ts <= high.ts:
                    keys.add((row.device_id, row.phase, row.ts))
    return sorted(keys)


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
    stored = stored if isinstance(stored, Sequence) else list(stored)
    plan = Plan()
    inserts = plan.inserts
    max_kw = rules.max_kw
    # Per series [its newest row so far, stored or accepted (of equal keys the first), and
    # its rows in ``inserts``]: one lookup per row finds both.
    state: dict[Series, list[Any]] = {}
    for row in stored:
        series = (row.device_id, row.phase)
        entry = state.get(series)
        if entry is None:
            state[series] = [row, []]
        elif row.ts > entry[0].ts:
            entry[0] = row
    # Every key stored or accepted so far, for rows that may be duplicates; built only once
    # such a row shows up, as a row newer than its series' newest cannot be one.
    by_key: dict[Key, ReadingRow] | None = None
    # Series with a late row, to plan again at the end; the own flags of the late rows, by
    # their index in ``inserts`` (where they wait unplanned).
    replan: set[Series] = set()
    late: dict[int, int] = {}

    # Arrival order decides what is late: a row older than anything stored or accepted
    # before it in this batch, exactly as if each message had been its own transaction.
    skew = rules.clock_skew
    received_at: datetime | None = None
    future = datetime.max
    for msg, envelope in enumerate(batch):
        conflicts = []
        for ord_, row in enumerate(envelope.rows):
            ts = row.ts
            series = (row.device_id, row.phase)
            entry = state.get(series)
            if entry is None:
                previous = None
                entry = state[series] = [row, []]
            else:
                previous = entry[0]
                if not ts > previous.ts:
                    if by_key is None:
                        by_key = _keys(stored, inserts)
                    key = (row.device_id, row.phase, ts)
                    existing = by_key.get(key)
                    if existing is not None:
                        differences = _differences(existing, row)
                        if differences:
                            conflicts.append(_conflict(row, differences))
                        continue
                    by_key[key] = row
                    if row.received_at is not received_at:
                        received_at = row.received_at
                        future = received_at + skew
                    own = FUTURE_TIMESTAMP if ts > future else 0
                    replan.add(series)
                    late[len(inserts)] = own | OUT_OF_ORDER if ts < previous.ts else own
                    inserts.append((msg, ord_, row))
                    entry[1].append(row)
                    continue
                entry[0] = row
            if by_key is not None:
                by_key[(row.device_id, row.phase, ts)] = row
            if row.received_at is not received_at:
                received_at = row.received_at
                future = received_at + skew
            own = FUTURE_TIMESTAMP if ts > future else 0
            if previous is None:
                delta: float | None = None
                own |= FIRST_READING
            else:
                # deltas.step, inlined (the same expressions, so the same floats): this is
                # the one branch nearly every row takes, and the call cost a tenth of it.
                if row.boot == previous.boot and row.seq > previous.seq + 1:
                    own |= GAP
                energy, previous_energy = row.values[-1], previous.values[-1]
                if energy < previous_energy:
                    delta = None
                    own |= COUNTER_RESET
                else:
                    delta = energy - previous_energy
                    hours = (ts - previous.ts).total_seconds() / 3600
                    if hours > 0 and delta / hours > max_kw:
                        own |= SUSPICIOUS_JUMP
            # The batch's own row takes its delta and flags in place (a copy per row was a
            # measurable cost); planning the batch again sets them again.
            row.energy_delta_kwh = delta
            row.flags = FLAG_SETS[own]
            inserts.append((msg, ord_, row))
            entry[1].append(row)
        plan.conflicts.append(conflicts)
    newest, by_series = plan.newest, plan.by_series
    for series, (high, rows) in state.items():
        newest[series] = high
        if rows:
            by_series[series] = rows
    if replan:
        _replan(plan, stored, replan, late, max_kw)
    return plan


def _keys(
    stored: Sequence[ReadingRow], inserts: Iterable[tuple[int, int, ReadingRow]]
) -> dict[Key, ReadingRow]:
    """Stored (of equal keys the first) and accepted rows by key."""
    by_key = {(row.device_id, row.phase, row.ts): row for row in reversed(stored)}
    by_key.update(((row.device_id, row.phase, row.ts), row) for _, _, row in inserts)
    return by_key


#: A row on a series' timeline: its index in ``Plan.inserts`` and its own flags (a mask),
#: or -1 and 0 for a stored row.
_Item = tuple[int, int, ReadingRow]


def _replan(
    plan: Plan,
    stored: Iterable[ReadingRow],
    replan: set[Series],
    late: dict[int, int],
    max_kw: float,
) -> None:
    """Plan the series in ``replan`` from scratch: merge each one's stored and new rows in
    ts order and walk them (in the order the series first got a new row, as updates go)."""
    timelines: dict[Series, list[_Item]] = {}
    for index, (_, _, row) in enumerate(plan.inserts):
        series = (row.device_id, row.phase)
        if series in replan:
            own = late.get(index)
            if own is None:  # planned on arrival; of its flags only its own still hold
                own = FUTURE_TIMESTAMP if Flag.FUTURE_TIMESTAMP.value in row.flags else 0
            timelines.setdefault(series, []).append((index, own, row))
    seen: set[Key] = set()
    before: dict[Series, list[_Item]] = {}
    for row in stored:
        series = (row.device_id, row.phase)
        if series in replan:
            key = (row.device_id, row.phase, row.ts)
            if key not in seen:
                seen.add(key)
                before.setdefault(series, []).append((-1, 0, row))
    for series, items in timelines.items():
        timeline = before.get(series, [])
        timeline.extend(items)
        timeline.sort(key=lambda item: item[2].ts)
        _timeline(plan, timeline, max_kw)


def _timeline(plan: Plan, timeline: list[_Item], max_kw: float) -> None:
    """Walk one series in ts order, taking each new row's delta against the row before it
    and recomputing a stored row whose predecessor is now a new row."""
    previous: ReadingRow | None = None
    previous_is_new = False
    for index, own, row in timeline:
        if index >= 0:
            if previous is None:
                delta: float | None = None
                flags = FIRST_READING
            else:
                delta, flags = _step(previous, row, max_kw)
            row.energy_delta_kwh = delta
            row.flags = FLAG_SETS[own | flags]
        elif previous is not None and previous_is_new:
            delta, flags = _step(previous, row, max_kw)
            for flag in row.flags:
                flags |= OWN_BITS.get(flag, 0)
            if FLAG_SETS[flags] != tuple(row.flags) or delta != row.energy_delta_kwh:
                plan.updates.append(_with(row, delta, FLAG_SETS[flags]))
        previous, previous_is_new = row, index >= 0


def _step(previous: ReadingRow, row: ReadingRow, max_kw: float) -> tuple[float | None, int]:
    return step(previous, previous.values[-1], row, row.values[-1], max_kw)


def _with(row: ReadingRow, delta: float | None, flags: tuple[str, ...]) -> ReadingRow:
    """``row`` with this delta and these flags (``msgspec.structs.replace``, without its cost)."""
    return ReadingRow(
        row.device_id,
        row.phase,
        row.ts,
        row.values,
        delta,
        flags,
        row.seq,
        row.boot,
        row.received_at,
    )
