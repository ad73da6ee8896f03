"""Tokens that ``ems up`` keeps for its own processes, in files only their owner can read."""

from __future__ import annotations

import os
from pathlib import Path

from ems_access.tokens import generate_token


def read_secret(path: Path) -> str | None:
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return None
    return value or None


def write_secret(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")


def load_or_create(path: Path) -> str:
    """The token stored at ``path``, or a new random one written there (mode 0600)."""
    existing = read_secret(path)
    if existing is not None:
        return existing
    token = generate_token()
    write_secret(path, token)
    return token
