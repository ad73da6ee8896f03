"""Fixtures used only by the platform tests (shared services come from tests/support)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ems_platform.core.db import Pool, open_pool


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[Pool]:
    """A pool opened the way the platform opens it (schema checked)."""
    async with open_pool(database_url, min_size=1, max_size=5) as opened:
        yield opened
