"""Where a connection's principal lives: amqtt's per-session ``attributes`` dict."""

from __future__ import annotations

from typing import Any

from ems_access import TOKEN_PREFIX, Principal

PRINCIPAL = "ems.principal"
TOKEN_HASH = "ems.token_hash"  # noqa: S105 - an attribute key
REFUSAL = "ems.refusal"


def principal_of(session: Any) -> Principal | None:
    value = session.attributes.get(PRINCIPAL) if session is not None else None
    return value if isinstance(value, Principal) else None


def token_hash_of(session: Any) -> str | None:
    value = session.attributes.get(TOKEN_HASH)
    return value if isinstance(value, str) else None


def bind(session: Any, principal: Principal, token_hash: str) -> None:
    session.attributes[PRINCIPAL] = principal
    session.attributes[TOKEN_HASH] = token_hash
    session.attributes.pop(REFUSAL, None)


def refuse(session: Any, return_code: int) -> None:
    """Remember which CONNACK code the refusal deserves (amqtt's hook returns a bool)."""
    session.attributes[REFUSAL] = return_code


def refusal_of(session: Any, default: int) -> int:
    value = session.attributes.get(REFUSAL)
    return value if isinstance(value, int) else default


def redact(value: str | None) -> str | None:
    """Free-text fields (username, client id) may hold a pasted token: never log one."""
    if value is not None and value.startswith(TOKEN_PREFIX) and len(value) > 20:
        return TOKEN_PREFIX + "<redacted>"
    return value


def describe(session: Any) -> str:
    """Client id, username and peer of a session, safe for logs."""
    return (
        f"client id {redact(session.client_id)!r}, username {redact(session.username)!r},"
        f" peer {session.remote_address}:{session.remote_port}"
    )
