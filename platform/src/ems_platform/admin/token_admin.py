"""Token and ACL administration, shared by the REST API and the ``ems`` CLI.

Both doors call these functions so a bad rule gets the same message everywhere. Every
change goes through ``ems_access.store``, whose NOTIFY makes brokers and the dashboard apply
it live.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Literal
from uuid import UUID

from pydantic import BaseModel, Field

from ems_access import store
from ems_access.errors import AccessError, InvalidRuleError, TokenNotFoundError
from ems_access.rules import ACCESSES, ROLES, AclRule, Role, default_rules
from ems_contract import is_valid_device_id
from ems_platform.core.db import Pool
from ems_platform.core.errors import PlatformError

log = logging.getLogger(__name__)

MAX_RULES = 256
MAX_LABEL_LENGTH = 200
MIN_ID_PREFIX = 4
_HEX_PREFIX = re.compile(r"^[0-9a-fA-F-]+$")


class TokenAdminError(PlatformError):
    """Base of the errors an admin sees; each maps to one HTTP status."""


class InvalidTokenRequestError(TokenAdminError, ValueError):
    """A role, label, device binding or expiry that is not allowed (422)."""


class InvalidAclError(TokenAdminError, ValueError):
    """An ACL rule that is not allowed; the message names the rule and why (422)."""


class TokenMissingError(TokenAdminError, LookupError):
    """No token with that id (404)."""


class TokenRevokedError(TokenAdminError):
    """The token is revoked; it can be shown but not changed (409)."""


class AclRuleView(BaseModel):
    topic: str = Field(description="MQTT filter; %c / %u stand for client id / username")
    access: Literal["read", "write", "readwrite", "deny"]


class TokenView(BaseModel):
    """A token as admins see it: never the secret, never its hash."""

    id: UUID
    role: Role
    label: str
    device_id: str | None
    acl: list[AclRuleView]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, info: store.TokenInfo) -> TokenView:
        return cls(
            id=info.id,
            role=info.role,
            label=info.label,
            device_id=info.device_id,
            acl=[AclRuleView(topic=r.topic, access=r.access) for r in info.rules],
            created_at=info.created_at,
            expires_at=info.expires_at,
            revoked_at=info.revoked_at,
            last_used_at=info.last_used_at,
        )


def parse_rules(rules: Iterable[tuple[str, str]]) -> tuple[AclRule, ...]:
    """Ordered (topic, access) pairs -> rules; an error names the first bad rule (1-based)."""
    parsed: list[AclRule] = []
    for number, (topic, access) in enumerate(rules, start=1):
        if number > MAX_RULES:
            raise InvalidAclError(f"at most {MAX_RULES} rules per token")
        if access not in ACCESSES:
            raise InvalidAclError(
                f"rule {number} ({access}:{topic}): access must be one of {', '.join(ACCESSES)}"
            )
        try:
            parsed.append(AclRule(topic, access))
        except InvalidRuleError as exc:
            raise InvalidAclError(f"rule {number} ({access}:{topic}): {exc}") from exc
    return tuple(parsed)


def parse_rule_spec(spec: str) -> tuple[str, str]:
    """``access:topic`` (the CLI syntax, e.g. ``read:ems/dev1/#``) -> (topic, access)."""
    access, sep, topic = spec.partition(":")
    if not sep or access.strip() not in ACCESSES:
        raise InvalidAclError(
            f"rule {spec!r}: write it as ACCESS:TOPIC, ACCESS one of {', '.join(ACCESSES)}"
        )
    return topic, access.strip()


def _check_request(
    role: str, label: str, device_id: str | None, expires_at: datetime | None
) -> Role:
    if role not in ROLES:
        raise InvalidTokenRequestError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidTokenRequestError(f"label is longer than {MAX_LABEL_LENGTH} characters")
    if role == "device" and device_id is None:
        raise InvalidTokenRequestError("a device token needs device_id (the device it is for)")
    if device_id is not None and not is_valid_device_id(device_id):
        raise InvalidTokenRequestError(
            f"device_id must match [A-Za-z0-9_-]{{1,64}}, got {device_id!r}"
        )
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidTokenRequestError("expires_at needs a UTC offset, e.g. ...T12:00:00Z")
        if expires_at <= datetime.now(UTC):
            raise InvalidTokenRequestError("expires_at is in the past")
    return role  # narrowed to Role by the ROLES check


async def _info(pool: Pool, token_id: UUID) -> store.TokenInfo:
    info = await store.get_token(pool, token_id)
    if info is None:
        raise TokenMissingError(f"no token {token_id}")
    return info


async def _live(pool: Pool, token_id: UUID) -> store.TokenInfo:
    info = await _info(pool, token_id)
    if info.revoked:
        raise TokenRevokedError(f"token {token_id} is revoked; create a new one instead")
    return info


async def create_token(
    pool: Pool,
    *,
    role: str,
    label: str = "",
    device_id: str | None = None,
    acl: Sequence[tuple[str, str]] | None = None,
    expires_at: datetime | None = None,
) -> tuple[TokenView, str]:
    """Create a token (role defaults unless ``acl`` is given); the plaintext is returned once."""
    checked_role = _check_request(role, label, device_id, expires_at)
    rules = None if acl is None else parse_rules(acl)
    try:
        principal, plaintext = await store.create_token(
            pool,
            role=checked_role,
            label=label,
            device_id=device_id,
            acl=rules,
            expires_at=expires_at,
        )
    except AccessError as exc:
        raise InvalidTokenRequestError(str(exc)) from exc
    log.info("token %s created (role %s)", principal.token_id, checked_role)
    return TokenView.of(await _info(pool, principal.token_id)), plaintext


async def list_tokens(pool: Pool, *, include_revoked: bool = False) -> list[TokenView]:
    infos = await store.list_tokens(pool, include_revoked=include_revoked)
    return [TokenView.of(info) for info in infos]


async def show_token(pool: Pool, token_id: UUID) -> TokenView:
    return TokenView.of(await _info(pool, token_id))


async def set_acl(pool: Pool, token_id: UUID, rules: Sequence[tuple[str, str]]) -> TokenView:
    """Replace a live token's ordered rules (an empty list denies everything)."""
    parsed = parse_rules(rules)
    await _live(pool, token_id)
    try:
        await store.set_acl(pool, token_id, parsed)
    except TokenNotFoundError as exc:
        raise TokenMissingError(str(exc)) from exc
    log.info("token %s: ACL replaced (%d rules)", token_id, len(parsed))
    return TokenView.of(await _info(pool, token_id))


async def reset_acl(pool: Pool, token_id: UUID) -> TokenView:
    """Give a live token its role's default rules again."""
    info = await _live(pool, token_id)
    defaults = default_rules(info.role)
    return await set_acl(pool, token_id, [(r.topic, r.access) for r in defaults])


async def rotate_token(pool: Pool, token_id: UUID) -> tuple[TokenView, str]:
    """A new secret for a live token; the old one stops working when this commits."""
    await _live(pool, token_id)
    try:
        plaintext = await store.rotate_token(pool, token_id)
    except TokenNotFoundError as exc:
        raise TokenRevokedError(f"token {token_id} is revoked; create a new one instead") from exc
    log.info("token %s rotated", token_id)
    return TokenView.of(await _info(pool, token_id)), plaintext


async def revoke_token(pool: Pool, token_id: UUID) -> TokenView:
    """Revoke a token; its live MQTT and WebSocket sessions are closed by their doors."""
    if (await _info(pool, token_id)).revoked or not await store.revoke_token(pool, token_id):
        raise TokenRevokedError(f"token {token_id} is already revoked")
    log.info("token %s revoked", token_id)
    return TokenView.of(await _info(pool, token_id))


async def resolve_token_id(pool: Pool, text: str) -> UUID:
    """A full token id, or a unique prefix of one (at least 4 characters; for the CLI)."""
    candidate = text.strip().lower()
    try:
        return UUID(candidate)
    except ValueError:
        pass
    if len(candidate) < MIN_ID_PREFIX or not _HEX_PREFIX.match(candidate):
        raise TokenMissingError(f"{text!r} is not a token id (nor a 4+ character prefix of one)")
    rows = await pool.fetch(
        "SELECT id FROM tokens WHERE id::text LIKE $1 || '%' ORDER BY created_at LIMIT 2",
        candidate,
    )
    if not rows:
        raise TokenMissingError(f"no token id starts with {text!r}")
    if len(rows) > 1:
        raise TokenMissingError(f"more than one token id starts with {text!r}; give more of it")
    return UUID(str(rows[0]["id"]))
