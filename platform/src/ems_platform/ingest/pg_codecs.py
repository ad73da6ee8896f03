"""A faster ``timestamptz`` codec for the ingest's own database connections.

asyncpg's built-in encoder turns each datetime into PostgreSQL's microseconds-since-2000 with
Python datetime arithmetic, about 1.6 µs a value; a 3-phase message carries seven (``ts`` and
``received_at`` per reading row, ``received_at`` of its audit row), which made timestamps
the largest part of encoding a COPY. The values repeat (three phases share a ``ts``, a whole
read shares a ``received_at``), so this encoder remembers recent ones, in a ``dict`` whose own
``__getitem__`` is the encoder asyncpg calls: a value seen before costs one lookup in C (a
``datetime`` hashes once and then matches by identity), not a Python call. That took 0.5-0.7
µs per message off the ingest's COPY encoding (A/B in one process, the batches of the
ingest benchmark), where a ``functools.lru_cache``-wrapped function cost about 0.1 µs more
per value. Installed only on the ingest's pool (``open_pool(..., init=install)``): the API's
connections keep asyncpg's codec. Values go in and come out exactly as with asyncpg's codec
(its ``infinity`` mapping and its reading of naive values included;
tests/platform/test_pg_codecs.py compares them).
"""

from __future__ import annotations

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


def _encode(value: datetime) -> tuple[int]:
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


class _Encoded(dict[datetime, tuple[int]]):
    """Encoded values by value; forgets them all at once when full (they are recent ones: the
    next batch encodes again what it needs)."""

    def __missing__(self, value: datetime) -> tuple[int]:
        if len(self) >= CACHE_SIZE:
            self.clear()
        encoded = self[value] = _encode(value)
        return encoded


#: What asyncpg calls per ``timestamptz`` value: ``dict.__getitem__``, which calls
#: ``__missing__`` (the encoding) only for a value not seen recently.
ENCODED = _Encoded()
encode_timestamptz = ENCODED.__getitem__


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
