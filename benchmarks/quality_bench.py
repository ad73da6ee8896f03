"""CPU of the ingest's quality planning (``quality.plan_batch``) alone, in µs per row.

``uv run python -m benchmarks.quality_bench``: no services; it plans the same batches over
and over against an in-memory history and prints the best of a few timed rounds (CPU time).

The batches look like the ingest's under load: 170 messages of one 3-phase sample each
(510 rows) from 100 devices, the store's context as ``pg_store`` fetches it (each series'
newest stored row, plus the neighbours of any row not newer than it). Cases:

- ``in order``: every row newer than its series' newest stored row, in ts order (the
  common case);
- ``10 % late``: one message in ten carries a sample that fills a hole in the stored
  history, so it is out of order and its stored successor's delta changes.
"""

from __future__ import annotations

import argparse
import bisect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ems_platform.ingest.deltas import QualityRules
from ems_platform.ingest.envelope import Envelope, Incoming, MessageKind, ReadingRow
from ems_platform.ingest.quality import context_keys, plan_batch, series_of

BASE = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
PHASES = ("A", "B", "C")
#: Stored history per series: a sample every other minute, so odd minutes are holes.
HISTORY = 20


def _values(energy: float) -> tuple[float, ...]:
    return (230.0, 4.5, 1000.0, 200.0, 1050.0, 0.95, 1.0, 2.0, energy)


def _row(device: str, phase: str, minute: int, received_at: datetime) -> ReadingRow:
    return ReadingRow(
        device_id=device,
        phase=phase,
        ts=BASE + timedelta(minutes=minute),
        values=_values(100.0 + minute * 0.01),
        energy_delta_kwh=None,
        flags=(),
        seq=minute,
        boot="b1",
        received_at=received_at,
    )


def _envelope(device: str, minute: int, received_at: datetime) -> Envelope:
    incoming = Incoming(f"ems/{device}/telemetry", b"", received_at)
    rows = [_row(device, phase, minute, received_at) for phase in PHASES]
    return Envelope(incoming, MessageKind.TELEMETRY, device, rows=rows)


@dataclass
class History:
    """What the database holds: per series, its rows in ts order."""

    rows: dict[tuple[str, str], list[ReadingRow]]

    def context(self, batch: Sequence[Envelope]) -> list[ReadingRow]:
        """The stored rows ``pg_store`` passes to ``plan_batch`` for this batch."""
        stored = [self.rows[s][-1] for s in series_of(batch) if s in self.rows]
        newest = {(r.device_id, r.phase): r for r in stored}
        for device, phase, ts in context_keys(batch, newest):
            series = self.rows[(device, phase)]
            at = bisect.bisect_right([r.ts for r in series], ts)
            stored.extend(series[at - 1 : at + 1] if at else series[:1])
        return stored


def scenario(
    late_every: int, *, devices: int = 100, messages: int = 170
) -> tuple[list[Envelope], list[ReadingRow]]:
    """A batch and its stored context; every ``late_every``-th message is late (0: none)."""
    received = BASE + timedelta(minutes=10 * HISTORY)
    names = [f"dev{n:04d}" for n in range(devices)]
    history = History(
        {
            (name, phase): [_row(name, phase, 2 * m, received) for m in range(HISTORY)]
            for name in names
            for phase in PHASES
        }
    )
    next_minute = dict.fromkeys(names, 2 * HISTORY)
    batch = []
    for n in range(messages):
        name = names[n % devices]
        if late_every and n % late_every == late_every - 1:
            minute = 2 * (n % (HISTORY - 1)) + 1  # a hole in the stored history
        else:
            minute = next_minute[name]
            next_minute[name] += 1
        batch.append(_envelope(name, minute, received))
    return batch, history.context(batch)


def measure(batch: list[Envelope], stored: list[ReadingRow], *, rounds: int, repeat: int) -> float:
    """Best-of-``rounds`` CPU µs per row of ``plan_batch`` (CPU time, not wall time, so
    other processes on a busy box matter less)."""
    rules = QualityRules()
    rows = sum(len(env.rows) for env in batch)
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(repeat):
            plan_batch(batch, stored, rules)
        best = min(best, (time.process_time() - start) / repeat)
    return best / rows * 1e6


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (best counts)")
    parser.add_argument("--repeat", type=int, default=20, help="plan_batch calls per round")
    args = parser.parse_args(argv)
    for name, late_every in (("in order", 0), ("10 % late", 10)):
        batch, stored = scenario(late_every)
        rows = sum(len(env.rows) for env in batch)
        per_row = measure(batch, stored, rounds=args.rounds, repeat=args.repeat)
        plan = plan_batch(batch, stored, QualityRules())
        print(
            f"{name:>10}: {per_row:6.2f} µs/row  ({per_row * rows:7.1f} µs per batch of "
            f"{len(batch)} messages, {rows} rows, {len(stored)} stored rows given, "
            f"{len(plan.updates)} updates)"
        )


if __name__ == "__main__":
    main()
