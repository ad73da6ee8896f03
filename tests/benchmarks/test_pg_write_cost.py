"""benchmarks.pg_write_cost writes what the ingest writes into a real durable TimescaleDB and
reports the database's CPU per message for each part."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.pg_write_cost import ARRIVAL_ORDER, MESSAGES, VARIANTS, _batch, run_variant


async def test_one_batch_is_stored_and_costed() -> None:
    # Under /tmp, as the benchmark does: the postgres OS user must reach the cluster.
    with tempfile.TemporaryDirectory(prefix="ems-pg-write-cost-test-") as workdir:
        Path(workdir).chmod(0o755)
        result = await run_variant("schema", 1, Path(workdir))
    assert set(result) >= {"readings", "raw_events", "commit", "all postgres processes"}
    # A 50,000-row COPY costs the backend measurable CPU; a broken run would read 0.
    assert result["readings"] > 0
    assert result["all postgres processes"] >= result["readings"]
    assert MESSAGES == 16_667


def test_variants_name_what_migration_0003_changed() -> None:
    assert any("raw_events_device_idx" in statement for statement in VARIANTS["full-device-index"])
    assert VARIANTS["schema"] == ()


async def test_every_variant_applies_to_the_migrated_schema() -> None:
    """Each variant's statements name indexes the migrations really create (0004 renamed the
    time indexes), and its batch is stored, with WAL counted."""
    with tempfile.TemporaryDirectory(prefix="ems-pg-write-cost-test-") as workdir:
        Path(workdir).chmod(0o755)
        for name in VARIANTS:
            result = await run_variant(name, 1, Path(workdir))
            assert result["WAL bytes"] > 0, name
            assert result["WAL records"] > 0, name


def test_readings_go_in_the_ingests_key_order_unless_asked_for_arrival_order() -> None:
    start = datetime(2026, 11, 23, 10, tzinfo=UTC)
    readings, raw = _batch(0, start)
    keys = [(row[0], row[1], row[2]) for row in readings]
    assert keys == sorted(keys) and len(raw) == MESSAGES
    arrival, _ = _batch(0, start, key_order=False)
    # The same rows (but for received_at, the time each was made), in another order.
    assert sorted(row[:-1] for row in arrival) == [row[:-1] for row in readings]
    # Round-robin over the devices, as messages arrive.
    assert [row[0] for row in arrival[:6:3]] == ["bench-00000", "bench-00001"]
    assert "arrival-order" in ARRIVAL_ORDER and "arrival-order" in VARIANTS
