"""Tokens and ACL rules in PostgreSQL (asyncpg). Only hashes of tokens are stored.

Every function takes a Connection, a pooled connection or a Pool. Each change sends
``NOTIFY ems_access, '<token id>'`` inside its transaction, so caches in other processes
(broker, API, WebSocket adapter) drop the token the moment the change commits.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias, cast
from uuid import UUID

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from ems_access.errors import (
    InvalidRuleError,
    InvalidTokenError,
    TokenNotFoundError,
    TokenUnusableError,
    UnknownDeviceError,
)
from ems_access.rules import ROLES, AclRule, Principal, Role, default_rules
from ems_access.tokens import generate_token, hash_token, is_strong_token
from ems_contract import is_valid_device_id

logger = logging.getLogger(__name__)

CHANNEL = "ems_access"
ALL_TOKENS = "*"
# last_used_at is bookkeeping for admins, not an audit log: one write per minute is plenty.
_TOUCH_INTERVAL = "60 seconds"

Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
Executor: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any] | asyncpg.Pool[Any]"


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token as admins see it: everything except the secret."""

    id: UUID
    role: Role
    label: str
    device_id: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rules: tuple[AclRule, ...]

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


_RULES = """
    coalesce(array_agg(r.topic ORDER BY r.position) FILTER (WHERE r.token_id IS NOT NULL),
             '{}') AS topics,
    coalesce(array_agg(r.access ORDER BY r.position) FILTER (WHERE r.token_id IS NOT NULL),
             '{}') AS accesses
"""

_PRINCIPAL_BY_HASH = f"""
WITH hit AS (
    SELECT t.id, t.role, t.label, t.device_id, t.expires_at, {_RULES}
    FROM tokens t LEFT JOIN acl_rules r ON r.token_id = t.id
    WHERE t.token_hash = $1 AND t.revoked_at IS NULL
      AND (t.expires_at IS NULL OR t.expires_at > now())
    GROUP BY t.id
), touched AS (
    UPDATE tokens SET last_used_at = now()
    FROM hit
    WHERE $2 AND tokens.id = hit.id
      AND (tokens.last_used_at IS NULL
           OR tokens.last_used_at < now() - interval '{_TOUCH_INTERVAL}')
)
SELECT * FROM hit
"""

_TOKEN_INFO = f"""
SELECT t.id, t.role, t.label, t.device_id, t.created_at, t.expires_at, t.revoked_at,
       t.last_used_at, {_RULES}
FROM tokens t LEFT JOIN acl_rules r ON r.token_id = t.id
"""


@asynccontextmanager
async def _transaction(conn: Executor) -> AsyncIterator[Connection]:
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as acquired, acquired.transaction():
            yield acquired
    else:
        async with conn.transaction():
            yield conn


def _rules_of(row: asyncpg.Record) -> tuple[AclRule, ...]:
    return tuple(
        AclRule(topic, access) for topic, access in zip(row["topics"], row["accesses"], strict=True)
    )


def _principal_of(row: asyncpg.Record) -> Principal | None:
    try:
        rules = _rules_of(row)
    except InvalidRuleError:
        # A rule that bypassed set_acl (edited by hand) could be a broken deny rule; granting
        # the rest would widen access, so the token stops working until an admin fixes it.
        logger.error("token %s has an invalid ACL rule in the database; refusing it", row["id"])
        return None
    return Principal(
        token_id=row["id"],
        role=row["role"],
        label=row["label"],
        device_id=row["device_id"],
        rules=rules,
        expires_at=row["expires_at"],
    )


def _info_of(row: asyncpg.Record) -> TokenInfo:
    return TokenInfo(
        id=row["id"],
        role=row["role"],
        label=row["label"],
        device_id=row["device_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
        rules=_rules_of(row),
    )


async def notify_access_changed(conn: Executor, token_id: UUID | None = None) -> None:
    """Tell every AccessCache that a token changed (None: possibly all of them).

    Call it after changing tokens by other means, e.g. deleting a device, which cascades to
    its tokens in the database.
    """
    payload = ALL_TOKENS if token_id is None else str(token_id)
    await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)


async def _insert_rules(conn: Connection, token_id: UUID, rules: Sequence[AclRule]) -> None:
    await conn.executemany(
        "INSERT INTO acl_rules (token_id, position, topic, access) VALUES ($1, $2, $3, $4)",
        [(token_id, position, rule.topic, rule.access) for position, rule in enumerate(rules)],
    )


def _checked_rules(rules: Sequence[AclRule]) -> tuple[AclRule, ...]:
    checked = tuple(rules)
    for rule in checked:
        if not isinstance(rule, AclRule):
            raise InvalidRuleError(f"expected AclRule, got {type(rule).__name__}")
    return checked


def _check_binding(role: Role, device_id: str | None, expires_at: datetime | None) -> None:
    if role not in ROLES:
        raise InvalidTokenError(f"role must be one of {ROLES}, got {role!r}")
    if role == "device" and device_id is None:
        raise InvalidTokenError("a device token must be bound to a device_id")
    if device_id is not None and not is_valid_device_id(device_id):
        raise InvalidTokenError(f"invalid device id {device_id!r}")
    if expires_at is not None and expires_at.tzinfo is None:
        raise InvalidTokenError("expires_at must carry a time zone")


async def create_token(
    conn: Executor,
    *,
    role: Role,
    label: str,
    device_id: str | None = None,
    acl: Sequence[AclRule] | None = None,
    expires_at: datetime | None = None,
) -> tuple[Principal, str]:
    """Create a token; the plaintext is returned once and never stored."""
    _check_binding(role, device_id, expires_at)
    rules = default_rules(role) if acl is None else _checked_rules(acl)
    plaintext = generate_token()
    try:
        async with _transaction(conn) as tx:
            token_id = cast(
                UUID,
                await tx.fetchval(
                    "INSERT INTO tokens (token_hash, role, label, device_id, expires_at)"
                    " VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    hash_token(plaintext),
                    role,
                    label,
                    device_id,
                    expires_at,
                ),
            )
            await _insert_rules(tx, token_id, rules)
            await notify_access_changed(tx, token_id)
    except asyncpg.ForeignKeyViolationError as exc:
        raise UnknownDeviceError(f"device {device_id!r} is not registered") from exc
    principal = Principal(token_id, role, label, device_id, rules, expires_at)
    return principal, plaintext


async def authenticate_hash(
    conn: Executor, token_hash: str, *, touch: bool = True
) -> Principal | None:
    """The live (not revoked, not expired) principal of a stored hash, or None."""
    row = await conn.fetchrow(_PRINCIPAL_BY_HASH, token_hash, touch)
    return None if row is None else _principal_of(row)


async def authenticate(conn: Executor, token: str) -> Principal | None:
    """The principal of a presented token, or None if unknown, revoked or expired."""
    if not token:
        return None
    return await authenticate_hash(conn, hash_token(token))


async def ensure_token(conn: Executor, token: str, *, role: Role, label: str) -> Principal:
    """Install a configured plaintext (EMS_ADMIN_TOKEN, service tokens) idempotently.

    A new token gets the role's default rules. An existing one keeps its rules unless its
    role changed, in which case the new role's defaults replace them. A revoked or expired
    one is not revived: raising TokenUnusableError makes the operator configure a new secret
    instead of silently undoing a revocation.
    """
    if not is_strong_token(token):
        raise InvalidTokenError("configured tokens must be random strings of 32+ characters")
    if role == "device":
        raise InvalidTokenError("device tokens are created per device, not configured")
    _check_binding(role, None, None)
    token_hash = hash_token(token)
    async with _transaction(conn) as tx:
        token_id = await tx.fetchval(
            "INSERT INTO tokens (token_hash, role, label) VALUES ($1, $2, $3)"
            " ON CONFLICT (token_hash) DO NOTHING RETURNING id",
            token_hash,
            role,
            label,
        )
        if token_id is not None:
            await _insert_rules(tx, token_id, default_rules(role))
            await notify_access_changed(tx, token_id)
        else:
            row = await tx.fetchrow(
                "SELECT id, role, label FROM tokens WHERE token_hash = $1 FOR UPDATE", token_hash
            )
            assert row is not None  # the conflicting row exists and tokens are never deleted here
            if row["role"] != role:
                await tx.execute(
                    "UPDATE tokens SET role = $2, label = $3 WHERE id = $1", row["id"], role, label
                )
                await tx.execute("DELETE FROM acl_rules WHERE token_id = $1", row["id"])
                await _insert_rules(tx, row["id"], default_rules(role))
                await notify_access_changed(tx, row["id"])
            elif row["label"] != label:
                await tx.execute("UPDATE tokens SET label = $2 WHERE id = $1", row["id"], label)
                await notify_access_changed(tx, row["id"])
        principal = await authenticate_hash(tx, token_hash, touch=False)
    if principal is None:
        raise TokenUnusableError(f"the configured {role} token {label!r} is revoked or expired")
    return principal


async def revoke_token(conn: Executor, token_id: UUID) -> bool:
    """Revoke a token; False if it does not exist or was already revoked."""
    async with _transaction(conn) as tx:
        revoked = await tx.fetchval(
            "UPDATE tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL"
            " RETURNING id",
            token_id,
        )
        if revoked is not None:
            await notify_access_changed(tx, token_id)
    return revoked is not None


async def rotate_token(conn: Executor, token_id: UUID) -> str:
    """Replace a live token's secret; the old plaintext stops working at once."""
    plaintext = generate_token()
    async with _transaction(conn) as tx:
        rotated = await tx.fetchval(
            "UPDATE tokens SET token_hash = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING id",
            token_id,
            hash_token(plaintext),
        )
        if rotated is None:
            raise TokenNotFoundError(f"no live token {token_id}")
        await notify_access_changed(tx, token_id)
    return plaintext


async def set_acl(conn: Executor, token_id: UUID, rules: Sequence[AclRule]) -> None:
    """Replace a token's ordered rules."""
    checked = _checked_rules(rules)
    async with _transaction(conn) as tx:
        exists = await tx.fetchval("SELECT id FROM tokens WHERE id = $1 FOR UPDATE", token_id)
        if exists is None:
            raise TokenNotFoundError(f"no token {token_id}")
        await tx.execute("DELETE FROM acl_rules WHERE token_id = $1", token_id)
        await _insert_rules(tx, token_id, checked)
        await notify_access_changed(tx, token_id)


async def get_token(conn: Executor, token_id: UUID) -> TokenInfo | None:
    row = await conn.fetchrow(_TOKEN_INFO + " WHERE t.id = $1 GROUP BY t.id", token_id)
    return None if row is None else _info_of(row)


async def list_tokens(conn: Executor, *, include_revoked: bool = True) -> list[TokenInfo]:
    where = "" if include_revoked else " WHERE t.revoked_at IS NULL"
    rows = await conn.fetch(_TOKEN_INFO + where + " GROUP BY t.id ORDER BY t.created_at, t.id")
    return [_info_of(row) for row in rows]


@dataclass(frozen=True, slots=True)
class SnapshotToken:
    """A live token as an external enforcer (the Mosquitto plugin) needs it: hash included."""

    token_hash: str
    id: UUID
    role: Role
    device_id: str | None
    expires_at: datetime | None
    rules: tuple[AclRule, ...]


_SNAPSHOT = f"""
SELECT t.id, t.token_hash, t.role, t.device_id, t.expires_at, {_RULES}
FROM tokens t LEFT JOIN acl_rules r ON r.token_id = t.id
WHERE t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now())
GROUP BY t.id
ORDER BY t.id
"""


async def export_snapshot(conn: Executor) -> list[SnapshotToken]:
    """Every live (not revoked, not expired) token with its hash and ordered rules.

    A token with an invalid rule is left out, as ``authenticate_hash`` refuses it.
    """
    tokens = []
    for row in await conn.fetch(_SNAPSHOT):
        try:
            rules = _rules_of(row)
        except InvalidRuleError:
            logger.error("token %s has an invalid ACL rule in the database; refusing it", row["id"])
            continue
        tokens.append(
            SnapshotToken(
                token_hash=row["token_hash"],
                id=row["id"],
                role=row["role"],
                device_id=row["device_id"],
                expires_at=row["expires_at"],
                rules=rules,
            )
        )
    return tokens
