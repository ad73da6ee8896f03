"""Finding the bearer token of a WebSocket handshake.

Programs send ``Authorization: Bearer <token>``. Browsers cannot set headers on a
WebSocket, so they offer two subprotocols, ``ems.v1`` and ``ems.bearer.<token>``; the
server selects ``ems.v1`` and the token never appears in a URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

PROTOCOL = "ems.v1"
BEARER_PREFIX = "ems.bearer."


@dataclass(frozen=True, slots=True)
class Credentials:
    token: str | None = field(repr=False)
    #: The subprotocol to select on accept (``ems.v1`` when the client offered it).
    subprotocol: str | None
    problem: str | None = None


def from_handshake(authorization: str | None, subprotocols: Sequence[str]) -> Credentials:
    selected = PROTOCOL if PROTOCOL in subprotocols else None
    if authorization is not None:
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            return Credentials(None, selected, "Authorization header must be 'Bearer <token>'")
        return Credentials(value, selected)
    offered = [p[len(BEARER_PREFIX) :] for p in subprotocols if p.startswith(BEARER_PREFIX)]
    if offered:
        if selected is None:
            return Credentials(None, None, f"offer the {PROTOCOL} subprotocol with the token")
        if not offered[0]:
            return Credentials(None, selected, "empty bearer subprotocol")
        return Credentials(offered[0], selected)
    return Credentials(None, selected, "missing token")
