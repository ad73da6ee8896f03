"""Timestamps on the wire: RFC 3339 with an explicit offset, or integer epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

# Year 2000 .. 2200 in epoch milliseconds: anything outside is a unit mistake (seconds, us).
_MIN_MS = 946_684_800_000
_MAX_MS = 7_258_118_400_000


def parse_timestamp(value: Any) -> datetime:
    """Parse a wire timestamp into an aware UTC datetime; raise ValueError with the reason."""
    if isinstance(value, str):  # nearly every sample: tested first
        # An upper-case copy only when there is no upper-case T to find.
        if len(value) > 40 or ("T" not in value and "T" not in value.upper()):
            raise ValueError("timestamp must be RFC 3339, e.g. 2026-11-22T08:15:03.000Z")
        try:
            # RFC 3339 allows lower-case t and z; fromisoformat does not.
            parsed = datetime.fromisoformat(value if value.isupper() else value.upper())
        except ValueError:
            raise ValueError(f"not an RFC 3339 timestamp: {value!r}") from None
    elif isinstance(value, bool):
        raise ValueError("timestamp must be an RFC 3339 string or integer epoch milliseconds")
    elif isinstance(value, int):
        if not _MIN_MS <= value <= _MAX_MS:
            raise ValueError("epoch timestamp must be in milliseconds (years 2000-2200)")
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    elif isinstance(value, datetime):
        parsed = value
    else:
        raise ValueError("timestamp must be an RFC 3339 string or integer epoch milliseconds")
    if parsed.tzinfo is UTC:
        return parsed  # Z or +00:00: already what astimezone would return (every sample)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("timestamp has no UTC offset; send Z or +hh:mm")
    return parsed.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with millisecond precision and a ``Z`` suffix."""
    if value.tzinfo is None:
        raise ValueError("refusing to format a naive datetime")
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


WireTimestamp = Annotated[
    datetime,
    BeforeValidator(parse_timestamp),
    PlainSerializer(format_timestamp, return_type=str, when_used="json"),
]
