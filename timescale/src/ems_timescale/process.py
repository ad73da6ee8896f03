"""Running the server's programs (as the server's OS user) and watching its processes."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from ems_timescale.osuser import OsUser

POLL_INTERVAL = 0.05


@dataclass(frozen=True, slots=True)
class RunResult:
    returncode: int
    output: str


class ProcessRunner:
    """Runs initdb/pg_ctl with a clean environment, as `user` when one is given."""

    def __init__(self, user: OsUser | None, cwd: Path) -> None:
        self._user = user
        self._cwd = cwd

    async def run(self, program: Path, *args: str) -> RunResult:
        # libpq variables in our environment (PGPORT, PGHOST...) would redirect pg_ctl.
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        extra: dict[str, object] = {}
        if self._user is not None:
            env.update(HOME=self._user.home, USER=self._user.name, LOGNAME=self._user.name)
            extra = {
                "user": self._user.uid,
                "group": self._user.gid,
                "extra_groups": list(self._user.groups),
            }
        proc = await asyncio.create_subprocess_exec(
            str(program),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=self._cwd,
            env=env,
            # Keep the server out of our terminal's process group: Ctrl-C reaches us, and
            # we stop the server after the services that write to it, not at the same time.
            start_new_session=True,
            **extra,  # type: ignore[arg-type]
        )
        output, _ = await proc.communicate()
        return RunResult(
            returncode=proc.returncode if proc.returncode is not None else -1,
            output=output.decode(errors="replace"),
        )


def is_postgres(pid: int) -> bool:
    """True while `pid` is a live (not zombie) postgres process."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # An exited postmaster is reparented to PID 1, which in a container may never reap it.
    state = stat.rpartition(")")[2].split()[0]
    return comm == "postgres" and state != "Z"


async def wait_gone(pid: int, within: float) -> bool:
    """Poll until `pid` is no live postgres process; False if it still is after `within` s."""
    # The postmaster is not our child, so there is nothing to wait on but /proc.
    try:
        async with asyncio.timeout(within):
            while True:
                if not is_postgres(pid):
                    return True
                await asyncio.sleep(POLL_INTERVAL)
    except TimeoutError:
        return False
