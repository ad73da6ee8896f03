"""A faster ``timestamptz`` codec for the ingest's own database connections.

asyncpg's built-in encoder turns each datetime into PostgreSQL's microseconds-since-2000 with
Python datetime arithmetic, about 1.6 µs a value; a 3-phase message carries seven (``ts`` and
``received_at`` per reading row, ``received_at`` of its audit row), which made timestamps
the largest part of encoding a COPY. The values repeat (three phases share a ``ts``, a whole
read shares a ``received_at``), so this encoder remembers recent ones. Installed only on the
ingest's pool (``open_pool(..., init=install)``): the API's connections keep asyncpg's
codec. Values go in and come out exactly as with asyncpg's codec (its ``infinity`` mapping
and its reading of naive values included; tests/platform/test_pg_codecs.py compares them).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

import asyncpg

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_INFINITY = 2**63 - 1
_NEG_INFINITY = -(2**63)
# asyncpg's own mapping of PostgreSQL's +/-infinity (pgproto/codecs/datetime.pyx): the naive
# extremes, and on the way in also any value at their instant.
_MAX = datetime.max
_MIN = datetime.min
_MAX_MICROS = 252455615999999999
_MIN_MICROS = -63082281600000000
#: Distinct timestamps remembered: more than one batch's worth of samples.
CACHE_SIZE = 1 << 17


@functools.lru_cache(maxsize=CACHE_SIZE)
def encode_timestamptz(value: datetime) -> tuple[int]:
    if value == _MAX:
        return (_INFINITY,)
    if value == _MIN:
        return (_NEG_INFINITY,)
    if value.tzinfo is None:
        # astimezone reads a naive value as local time, exactly as asyncpg's encoder does.
        value = value.astimezone(UTC)
    micros = (value - PG_EPOCH) // _MICROSECOND
    if micros == _MAX_MICROS:
        return (_INFINITY,)
    if micros == _MIN_MICROS:
        return (_NEG_INFINITY,)
    return (micros,)


def decode_timestamptz(value: tuple[int]) -> datetime:
    micros = value[0]
    if micros == _INFINITY:
        return _MAX
    if micros == _NEG_INFINITY:
        return _MIN
    return PG_EPOCH + timedelta(microseconds=micros)


async def install(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """``init`` of the ingest's pool: every new connection gets the codec."""
    await conn.set_type_codec(
        "timestamptz",
        schema="pg_catalog",
        encoder=encode_timestamptz,
        decoder=decode_timestamptz,
        format="tuple",
    )
