"""Which OS user runs the server, and whether it can reach the data directory.

PostgreSQL refuses to run as root. When we are root (containers, `ems up` under sudo) the
server programs run as the `postgres` user that Debian's package creates.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from ems_timescale.errors import ClusterError, DataDirAccessError

SERVER_USER = "postgres"


@dataclass(frozen=True, slots=True)
class OsUser:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def server_user() -> OsUser | None:
    """The user to switch to, or None when the server can run as this process's own user."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError as exc:
        raise ClusterError(
            f"running as root needs the {SERVER_USER!r} OS user to run PostgreSQL; "
            "install postgresql-15 (scripts/setup-system.sh)"
        ) from exc
    return OsUser(
        name=entry.pw_name,
        uid=entry.pw_uid,
        gid=entry.pw_gid,
        # Set explicitly when switching, or the server would keep root's supplementary groups.
        groups=tuple(os.getgrouplist(entry.pw_name, entry.pw_gid)),
        home=entry.pw_dir,
    )


def check_traversable(user: OsUser, data_dir: Path) -> None:
    """Raise naming the first ancestor of `data_dir` that `user` may not search."""
    for directory in reversed(data_dir.parents):
        if not _may_search(user, directory):
            raise DataDirAccessError(
                f"the {user.name!r} OS user that runs PostgreSQL cannot enter {directory}, so it "
                f"cannot reach the data directory {data_dir}; pick a data directory it can "
                f"reach (for example under /tmp or /var/lib) or `chmod o+x {directory}`"
            )


def _may_search(user: OsUser, directory: Path) -> bool:
    info = directory.stat()
    # POSIX checks exactly one class: owner, else group, else other.
    if info.st_uid == user.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in user.groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)
