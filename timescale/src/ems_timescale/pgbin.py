"""Finding the PostgreSQL server binaries and checking TimescaleDB is installed beside them."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ems_timescale.errors import PostgresNotFoundError, TimescaleNotInstalledError
from ems_timescale.settings import TimescaleSettings

# Debian's layout; the EMS machines run PostgreSQL 15 from Debian 12.
DEBIAN_PG_BIN = Path("/usr/lib/postgresql/15/bin")
SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")
SETUP_HINT = "run scripts/setup-system.sh"


@dataclass(frozen=True, slots=True)
class PgInstall:
    """One PostgreSQL installation: where its programs and extension files live."""

    bindir: Path
    sharedir: Path

    def tool(self, name: str) -> Path:
        return self.bindir / name


def find_pg_install(explicit: Path | None = None) -> PgInstall:
    """Resolve binaries from `explicit`, EMS_PG_BIN, Debian's path, then `pg_config --bindir`."""
    bindir = explicit or TimescaleSettings().pg_bin or _default_bindir()
    missing = [tool for tool in SERVER_TOOLS if not (bindir / tool).is_file()]
    if missing:
        raise PostgresNotFoundError(
            f"PostgreSQL server programs {', '.join(missing)} not found in {bindir}: "
            f"{SETUP_HINT}, or set EMS_PG_BIN to the directory holding pg_ctl"
        )
    install = PgInstall(bindir=bindir, sharedir=_sharedir(bindir))
    control = install.sharedir / "extension" / "timescaledb.control"
    if not control.is_file():
        raise TimescaleNotInstalledError(
            f"TimescaleDB is not installed for the PostgreSQL in {bindir} "
            f"(no {control}): {SETUP_HINT}"
        )
    return install


def _default_bindir() -> Path:
    if (DEBIAN_PG_BIN / "pg_ctl").is_file():
        return DEBIAN_PG_BIN
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        raise PostgresNotFoundError(
            f"PostgreSQL 15 not found ({DEBIAN_PG_BIN} is missing and pg_config is not on "
            f"PATH): {SETUP_HINT}, or set EMS_PG_BIN"
        )
    return Path(_pg_config(Path(pg_config), "--bindir"))


def _sharedir(bindir: Path) -> Path:
    pg_config = bindir / "pg_config"
    if pg_config.is_file():
        return Path(_pg_config(pg_config, "--sharedir"))
    # Debian ships pg_config with the -dev package; its sharedir is /usr/share/postgresql/<major>.
    return Path("/usr/share/postgresql") / bindir.parent.name


def _pg_config(pg_config: Path, option: str) -> str:
    try:
        done = subprocess.run(
            [str(pg_config), option], capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise PostgresNotFoundError(f"{pg_config} {option} failed: {exc}") from exc
    return done.stdout.strip()
