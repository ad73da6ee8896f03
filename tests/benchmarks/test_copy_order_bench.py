"""benchmarks.copy_order_bench COPYs the same rows in three orders into three twin tables;
here with one batch past the warm-up, for correctness only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from benchmarks.copy_order_bench import ORDERS, measure
from benchmarks.pg_write_cost import _batch


def test_the_orders_hold_the_same_rows() -> None:
    rows, _ = _batch(0, datetime(2026, 11, 23, 10, tzinfo=UTC), key_order=False)
    keyed = ORDERS["key"](rows)
    by_device = ORDERS["device"](rows)
    assert sorted(map(repr, keyed)) == sorted(map(repr, rows)) == sorted(map(repr, by_device))
    keys = [(r[0], r[1], r[2]) for r in keyed]
    assert keys == sorted(keys)
    devices = [r[0] for r in by_device]
    assert devices == sorted(devices)  # type: ignore[type-var]
    assert ORDERS["arrival"](rows) is rows


async def test_every_order_is_measured_and_every_table_filled(database_url: str) -> None:
    # measure() raises unless each table holds every batch's 50,000 rows.
    result = await measure(database_url, batches=4)
    assert set(result) == set(ORDERS)
    assert all(us > 0 for us in result.values())


async def test_warm_up_batches_alone_are_refused(database_url: str) -> None:
    with pytest.raises(ValueError, match="warm-up"):
        await measure(database_url, batches=3)
