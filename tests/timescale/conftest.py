"""Fixtures for the migration runner's own tests: databases it has not migrated yet."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from ems_timescale import LocalCluster
from tests.support.pg import run_sync


@pytest.fixture
def empty_database_url(pg_cluster: LocalCluster) -> Iterator[str]:
    """A database on the session cluster that no migration has touched."""
    name = f"empty_{uuid.uuid4().hex[:16]}"
    run_sync(pg_cluster.ensure_database(name))
    try:
        yield pg_cluster.dsn(name)
    finally:
        run_sync(pg_cluster.drop_database(name))
