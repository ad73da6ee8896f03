"""edition() on values a real server here never returns (a fake connection stands in)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from ems_timescale import UnknownEditionError, edition
from ems_timescale.migrate import Queryable


class FakeConnection:
    def __init__(self, license_value: str) -> None:
        self.license_value = license_value
        self.queries: list[str] = []

    async def fetchval(self, query: str, *args: Any) -> str:
        self.queries.append(query)
        return self.license_value


@pytest.mark.parametrize("value", ["apache", "timescale"])
async def test_known_editions(value: str) -> None:
    conn = FakeConnection(value)
    assert await edition(cast(Queryable, conn)) == value
    assert conn.queries == ["SHOW timescaledb.license"]


async def test_unknown_edition_is_an_error() -> None:
    with pytest.raises(UnknownEditionError, match="community"):
        await edition(cast(Queryable, FakeConnection("community")))
