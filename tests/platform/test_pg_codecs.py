"""The ingest's timestamptz codec against real PostgreSQL: what it writes and reads is what
asyncpg's own codec writes and reads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from ems_platform.core.db import Pool, open_pool
from ems_platform.ingest import pg_codecs

VALUES = [
    datetime(2026, 11, 23, 10, 0, 0, 123456, tzinfo=UTC),
    datetime(2026, 11, 23, 12, 0, 0, 1, tzinfo=timezone(timedelta(hours=2))),
    datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),  # before PostgreSQL's epoch
    datetime(1970, 1, 1, tzinfo=UTC),
    datetime(9999, 12, 30, tzinfo=UTC),
    datetime(2026, 3, 29, 1, 30, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
    datetime.max.replace(tzinfo=UTC),  # asyncpg takes this instant for infinity too
    datetime.max,  # asyncpg's infinity
    datetime.min,  # and -infinity
]


@pytest.fixture
async def codec_pool(database_url: str) -> AsyncIterator[Pool]:
    async with open_pool(database_url, max_size=2, init=pg_codecs.install) as opened:
        yield opened


async def test_values_round_trip_as_with_asyncpgs_codec(pool: Pool, codec_pool: Pool) -> None:
    for value in VALUES:
        ours = await codec_pool.fetchval("SELECT $1::timestamptz", value)
        native = await pool.fetchval("SELECT $1::timestamptz", value)
        assert ours == native
        assert ours.tzinfo == native.tzinfo
        # What one wrote, the other reads back the same, as text too.
        assert await pool.fetchval("SELECT $1::timestamptz::text", value) == (
            await codec_pool.fetchval("SELECT $1::timestamptz::text", value)
        )


async def test_naive_values_are_taken_as_utc_like_asyncpg_does(
    pool: Pool, codec_pool: Pool
) -> None:
    naive = datetime(2026, 11, 23, 10, 0, 0, 5)
    assert await codec_pool.fetchval("SELECT $1::timestamptz", naive) == (
        await pool.fetchval("SELECT $1::timestamptz", naive)
    )


async def test_copy_with_the_codec_stores_the_same_instants(pool: Pool, codec_pool: Pool) -> None:
    await pool.execute("CREATE TABLE stamps (n int, at timestamptz)")
    async with codec_pool.acquire() as conn:
        await conn.copy_records_to_table(
            "stamps", records=list(enumerate(VALUES)), columns=("n", "at")
        )
    stored = await pool.fetch("SELECT n, at FROM stamps ORDER BY n")
    assert [r["at"] for r in stored] == [
        await pool.fetchval("SELECT $1::timestamptz", value) for value in VALUES
    ]
    assert [r["at"] for r in stored][:6] == VALUES[:6]  # the finite ones, unchanged


def test_the_encoder_remembers_a_bounded_number_of_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg_codecs, "CACHE_SIZE", 4)
    start = datetime(2026, 11, 24, tzinfo=UTC)
    values = [start + timedelta(microseconds=n) for n in range(10)]
    encoded = [pg_codecs.encode_timestamptz(value) for value in values]
    base = (start - pg_codecs.PG_EPOCH) // timedelta(microseconds=1)
    assert encoded == [(base + n,) for n in range(10)]
    assert len(pg_codecs.ENCODED) <= 4
    # Asked again, after being forgotten or not, each value encodes the same.
    assert [pg_codecs.encode_timestamptz(value) for value in values] == encoded
