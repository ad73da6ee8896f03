"""`python -m ems_timescale` as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import asyncpg


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "EMS_DATABASE_URL"}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ems_timescale", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        check=False,
    )


def test_help_lists_commands() -> None:
    done = _run("--help")
    assert done.returncode == 0
    for word in ("migrate", "edition", "cluster"):
        assert word in done.stdout
    assert "EMS_DATABASE_URL" in _run("migrate", "--help").stdout


def test_migrate_needs_a_database() -> None:
    done = _run("migrate")
    assert done.returncode == 2
    assert "EMS_DATABASE_URL" in done.stderr


async def test_migrate_from_the_environment(empty_database_url: str) -> None:
    done = _run("migrate", env={"EMS_DATABASE_URL": empty_database_url})
    assert done.returncode == 0, done.stderr
    assert "applied migration 0001_core" in done.stderr
    conn = await asyncpg.connect(empty_database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") >= 1
    finally:
        await conn.close()
    again = _run("migrate", "--database-url", empty_database_url)
    assert again.returncode == 0, again.stderr
    assert "0 migration(s) applied" in again.stderr


def test_edition_prints_apache(database_url: str) -> None:
    done = _run("edition", "--database-url", database_url)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "apache\n"


def test_unreachable_database_is_a_clean_error(pg_cluster: object) -> None:
    done = _run("migrate", "--database-url", "postgresql://postgres@127.0.0.1:1/none")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "cannot connect" in done.stderr
