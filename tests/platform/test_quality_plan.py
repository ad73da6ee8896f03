"""The fast quality planner against the straightforward reference, over random histories.

Each case runs a few batches through an in-memory "database" the way the stores do: the
planner gets the stored context (everything of the batch's series, as ``MemoryReadingStore``
passes it, or only what ``PgReadingStore`` fetches: the newest row per series and the
neighbours of every row not newer than it), its plan must equal the reference's exactly
(rows, deltas, flags and their order, conflicts with their detail, updates and their order),
and the plan is applied before the next batch. The samples mix in-order rows, late ones,
exact duplicates, conflicting ones, counter resets, reboots, seq gaps, suspicious jumps and
future timestamps.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest
from msgspec.structs import fields, replace

from ems_platform.ingest import deltas, quality
from ems_platform.ingest.deltas import OWN_FLAGS, Point, QualityRules, derive, ordered
from ems_platform.ingest.envelope import Envelope, Incoming, MessageKind, ReadingRow
from ems_platform.ingest.quality import (
    Plan,
    context_keys,
    oldest_per_series,
    plan_batch,
    series_of,
)
from tests.platform import quality_reference as reference

BASE = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))
CASES = 1500


@dataclass
class Meter:
    """One device's truth: its counter per phase, boot and seq as time goes on."""

    energy: dict[str, float]
    boot: int = 1
    seq: int = 0
    minute: int = 0


@dataclass
class World:
    rng: random.Random
    rules: QualityRules
    meters: dict[str, Meter]
    phases: tuple[str, ...]
    #: Every row ever sent, to send again (duplicates) or to contradict (conflicts).
    sent: list[ReadingRow] = field(default_factory=list)
    #: The "database": key -> row, in insertion order like MemoryReadingStore's.
    stored: dict[tuple[str, str, datetime], ReadingRow] = field(default_factory=dict)
    #: Rows held back to go out after newer ones (late rows).
    held: list[ReadingRow] = field(default_factory=list)
    #: Whether a stored row was tampered with, so the whole-series invariant no longer holds.
    tampered: bool = False

    def sample(self, device: str) -> list[ReadingRow]:
        """The rows of one new sample of ``device`` (its phases), usually the next minute."""
        rng, meter = self.rng, self.meters[device]
        meter.minute += rng.choice((1, 1, 1, 2, 5))
        meter.seq += rng.choice((1, 1, 1, 1, 2, 4))
        if rng.random() < 0.05:  # reboot: seq restarts, the counter may or may not
            meter.boot += 1
            meter.seq = 0
        rows = []
        for phase in self.phases:
            if rng.random() < 0.05:
                meter.energy[phase] = rng.uniform(0, 1)  # counter reset / meter replaced
            elif rng.random() < 0.05:
                meter.energy[phase] += rng.uniform(50, 500)  # suspicious jump
            else:
                meter.energy[phase] += rng.choice((0.0, rng.uniform(0, 0.05)))
            rows.append(self.row(device, phase, meter.minute, meter.energy[phase], meter.seq))
        return rows

    def row(self, device: str, phase: str, minute: int, energy: float, seq: int) -> ReadingRow:
        rng = self.rng
        ts = BASE + timedelta(minutes=minute, seconds=rng.choice((0, 0, 0, 17)))
        if rng.random() < 0.05:
            ts = ts.astimezone(PLUS_TWO)  # the same instant, another offset
        lag = timedelta(seconds=rng.choice((1, 5, 60)))
        if rng.random() < 0.05:
            lag = -timedelta(seconds=rng.choice((300, 301, 3600)))  # the device's clock runs fast
        return ReadingRow(
            device_id=device,
            phase=phase,
            ts=ts,
            values=(230.0, 4.5, 1000.0, 200.0, 1050.0, 0.95, 1.0, 2.0, round(energy, 6)),
            energy_delta_kwh=None,
            flags=(),
            seq=seq,
            boot=f"b{self.meters[device].boot}",
            received_at=ts + lag,
        )

    def message(self) -> Envelope:
        rng = self.rng
        device = rng.choice(sorted(self.meters))
        roll = rng.random()
        if roll < 0.1 and self.sent:  # an exact duplicate of something sent before
            rows = [rng.choice(self.sent)]
        elif roll < 0.15 and self.sent:  # the same key with other values
            old = rng.choice(self.sent)
            values = (*old.values[:-1], old.values[-1] + rng.choice((0.0, 0.5)))
            rows = [
                ReadingRow(
                    old.device_id,
                    old.phase,
                    old.ts,
                    values,
                    None,
                    (),
                    old.seq + rng.choice((0, 1)),
                    rng.choice((old.boot, "other")),
                    old.received_at,
                )
            ]
        else:
            rows = [row for _ in range(rng.choice((1, 1, 1, 2, 3))) for row in self.sample(device)]
            if roll < 0.35:  # late: held back, it goes out after newer ones
                self.held.extend(rows)
                rows = []
            if self.held and rng.random() < 0.5:
                rows.extend(self.held)
                self.held.clear()
        self.sent.extend(rows)
        if rng.random() < 0.3:
            rng.shuffle(rows)
        incoming = Incoming(f"ems/{device}/telemetry", b"", BASE)
        return Envelope(incoming, MessageKind.TELEMETRY, device, rows=rows)

    def context(self, batch: list[Envelope]) -> list[ReadingRow]:
        """What a store would pass to the planner for this batch, chosen at random."""
        rng = self.rng
        series = set(series_of(batch))
        rows = [r for r in self.stored.values() if (r.device_id, r.phase) in series]
        if rng.random() < 0.3:  # MemoryReadingStore: everything of those series
            context = rows
        else:  # PgReadingStore: newest per series, then what is around the older rows
            by_series: dict[tuple[str, str], list[ReadingRow]] = {}
            for row in sorted(rows, key=lambda r: r.ts):
                by_series.setdefault((row.device_id, row.phase), []).append(row)
            context = [timeline[-1] for timeline in by_series.values()]
            newest = {s: timeline[-1] for s, timeline in by_series.items()}
            keys = context_keys(batch, newest, oldest_per_series(batch))
            # The rows not newer than their series' newest stored row, found the plain way.
            assert keys == sorted(
                {
                    (r.device_id, r.phase, r.ts)
                    for env in batch
                    for r in env.rows
                    if (r.device_id, r.phase) in newest
                    and r.ts <= newest[(r.device_id, r.phase)].ts
                }
            )
            assert context_keys(batch, newest) == keys
            for device, phase, ts in keys:
                timeline = by_series[(device, phase)]
                at = bisect.bisect_right([r.ts for r in timeline], ts)
                context.extend(timeline[max(at - 1, 0) : at + 1] if at else timeline[:1])
        context = list(context)
        if rng.random() < 0.3:
            rng.shuffle(context)
        if context and rng.random() < 0.05:  # a row twice, or a stale copy after the real one
            twin = rng.choice(context)
            if rng.random() < 0.5:
                twin = replace(twin, energy_delta_kwh=0.0, flags=("gap",), seq=0, boot="x")
                self.tampered = True
            context.append(twin)
        if context and rng.random() < 0.05:  # flags out of canonical order, or unknown ones
            at = rng.randrange(len(context))
            flags = (*reversed(context[at].flags), *(("legacy",) if rng.random() < 0.5 else ()))
            context[at] = replace(context[at], flags=flags)
            self.tampered = True
        return context

    def apply(self, plan: Plan) -> None:
        for _, _, row in plan.inserts:
            self.stored[row.key] = row
        for row in plan.updates:
            self.stored[row.key] = row


def world(seed: int) -> World:
    rng = random.Random(seed)
    phases = rng.choice((("A",), ("A", "B"), ("A", "B", "C")))
    devices = [f"dev{n}" for n in range(rng.choice((1, 1, 2, 3)))]
    rules = QualityRules(
        max_kw=rng.choice((100.0, 2000.0, 1e9)), clock_skew_s=rng.choice((0.0, 300.0))
    )
    meters = {d: Meter({p: rng.uniform(0, 1000) for p in phases}) for d in devices}
    return World(rng, rules, meters, phases)


def batches(w: World) -> Iterator[list[Envelope]]:
    for _ in range(w.rng.choice((1, 2, 4, 8))):
        yield [w.message() for _ in range(w.rng.choice((1, 2, 5, 12)))]


def check_series(w: World) -> None:
    """After every batch the database holds what recomputing each whole series would give:
    each row's delta and derived flags against its predecessor (``derive``)."""
    by_series: dict[tuple[str, str], list[ReadingRow]] = {}
    for row in sorted(w.stored.values(), key=lambda r: r.ts):
        by_series.setdefault((row.device_id, row.phase), []).append(row)
    for timeline in by_series.values():
        previous: Point | None = None
        for row in timeline:
            point = Point(row.ts, row.values[-1], row.boot, row.seq)
            want = derive(previous, point, w.rules)
            assert row.energy_delta_kwh == want.energy_delta_kwh
            assert tuple(f for f in row.flags if f not in OWN_FLAGS) == want.flags
            previous = point


def run(seed: int, seen: Counter[str]) -> None:
    w = world(seed)
    for batch in batches(w):
        context = w.context(batch)
        want = reference.plan_batch(batch, context, w.rules)
        got = plan_batch(batch, context, w.rules)
        assert got == want, f"seed {seed}"
        assert plan_batch(batch, iter(context), w.rules) == want, f"seed {seed}"
        # The by-product the store relies on: every insert in its series' group, in
        # arrival order.
        grouped: dict[tuple[str, str], list[ReadingRow]] = {}
        for _, _, row in got.inserts:
            grouped.setdefault((row.device_id, row.phase), []).append(row)
        assert got.by_series == grouped, f"seed {seed}"
        w.apply(want)
        if not w.tampered:
            check_series(w)
        seen.update(f for _, _, row in want.inserts for f in row.flags)
        seen.update(
            inserts=len(want.inserts),
            updates=len(want.updates),
            conflicts=sum(map(len, want.conflicts)),
            duplicates=sum(len(e.rows) for e in batch)
            - len(want.inserts)
            - sum(map(len, want.conflicts)),
        )


@pytest.mark.parametrize("chunk", range(10))
def test_fast_planner_equals_the_reference(chunk: int) -> None:
    seen: Counter[str] = Counter()
    for seed in range(chunk * CASES // 10, (chunk + 1) * CASES // 10):
        run(seed, seen)
    # The random histories really do cover every kind of row.
    wanted = {"inserts", "updates", "conflicts", "duplicates", *deltas.BITS}
    assert wanted <= {name for name, count in seen.items() if count > 0}, seen


def test_a_growing_series_and_an_empty_batch() -> None:
    """The common case spelled out: one stored row per series, new rows after it in order."""
    rules = QualityRules()
    w = world(0)
    first = [w.message() for _ in range(3)]
    w.apply(reference.plan_batch(first, [], rules))
    assert plan_batch([], w.context([]), rules) == Plan()
    batch = [
        Envelope(Incoming("ems/dev0/telemetry", b"", BASE), MessageKind.TELEMETRY, "dev0", rows)
        for rows in (w.sample("dev0"), w.sample("dev0"))
    ]
    stored = w.context(batch)
    assert plan_batch(batch, stored, rules) == reference.plan_batch(batch, stored, rules)


def test_ordered_matches_the_reference_on_every_set() -> None:
    names = [*deltas.BITS, "legacy", "zzz"]
    for mask in range(1 << len(names)):
        flags = {name for n, name in enumerate(names) if mask >> n & 1}
        assert ordered(flags) == reference.ordered(flags)
        assert ordered(frozenset(flags)) == reference.ordered(flags)
        known = {f for f in flags if f in deltas.BITS}
        assert deltas.FLAG_SETS[sum(deltas.BITS[f] for f in known)] == reference.ordered(known)


def test_derive_matches_the_reference() -> None:
    rng = random.Random(7)
    for _ in range(5000):
        rules = QualityRules(max_kw=rng.choice((1.0, 100.0, 2000.0)))
        ts = BASE + timedelta(seconds=rng.choice((0, 1, 36, 60, 3600)))
        previous = Point(BASE, rng.choice((0.0, 1.0, 10.0)), rng.choice("ab"), rng.randrange(4))
        current = Point(ts, rng.choice((0.0, 1.0, 1.1, 10.0, 11.1)), "a", rng.randrange(6))
        got = derive(previous, current, rules)
        want = reference.derive(
            reference.Point(*(getattr(previous, f) for f in ("ts", "energy_kwh", "boot", "seq"))),
            reference.Point(*(getattr(current, f) for f in ("ts", "energy_kwh", "boot", "seq"))),
            rules,
        )
        assert (got.energy_delta_kwh, got.flags) == (want.energy_delta_kwh, want.flags)
    first = derive(None, Point(BASE, 1.0, "a", 0), QualityRules())
    assert (first.energy_delta_kwh, first.flags) == (None, ("first_reading",))


def test_rows_are_built_with_every_field() -> None:
    row = world(1).sample("dev0")[0]
    built = quality._with(row, 0.5, ("gap",))
    assert all(hasattr(built, f.name) for f in fields(ReadingRow))
    assert built == replace(row, energy_delta_kwh=0.5, flags=("gap",))
    assert type(built) is ReadingRow
