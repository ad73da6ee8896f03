"""The access snapshot the Mosquitto plugin enforces: rendering and atomic writing.

Format (parsed by ``broker/mosquitto-plugin/snapshot.c``), one record per line::

    ems-access-snapshot 1
    token <sha256 hex> <token id> <role> <device id or -> <expiry, epoch ms, or ->
    rule <read|write|readwrite|deny> <topic filter: rest of the line; \\ \\n \\r escaped>
    end <number of tokens>

Only live tokens are listed (revoked ones are simply absent); the plugin still checks the
expiry itself, so a token stops working at its expiry even between two exports.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path

from ems_access.store import SnapshotToken

HEADER = "ems-access-snapshot 1"


def _escape(topic: str) -> str:
    return topic.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def render_snapshot(tokens: Iterable[SnapshotToken]) -> str:
    lines = [HEADER, "# written by `ems broker --mosquitto` from the EMS database; do not edit"]
    count = 0
    for token in tokens:
        expires = "-"
        if token.expires_at is not None:
            expires = str(math.floor(token.expires_at.timestamp() * 1000))
        lines.append(
            f"token {token.token_hash.lower()} {token.id} {token.role}"
            f" {token.device_id or '-'} {expires}"
        )
        lines.extend(f"rule {rule.access} {_escape(rule.topic)}" for rule in token.rules)
        count += 1
    lines.append(f"end {count}")
    return "\n".join(lines) + "\n"


def write_snapshot(path: Path, text: str) -> bool:
    """Replace the snapshot atomically; False (and no write) if it is unchanged."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return True
