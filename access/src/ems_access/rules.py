"""Roles, ordered ACL rules and the Principal that every door (MQTT, WebSocket, REST) asks.

Semantics (ARCHITECTURE section 3): rules are tried in order and the first rule that both
matches the topic and speaks about the action decides; no such rule means deny. A ``read``
rule says nothing about writing and vice versa, so ``read ems/#`` followed by
``write ems/+/cmd`` lets an operator do both; a ``deny`` rule speaks about every action, so
it shadows whatever follows it. ``%c`` and ``%u`` stand for the client id and the username
as whole topic levels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from types import MappingProxyType
from typing import Literal, get_args
from uuid import UUID

from ems_access.errors import InvalidRuleError, InvalidTopicFilterError
from ems_access.topics import (
    MULTI,
    SINGLE,
    covers_levels,
    is_valid_filter,
    is_valid_topic_name,
    match_levels,
    overlap_levels,
    validate_filter,
)
from ems_contract import is_valid_device_id, telemetry_topic

Role = Literal["device", "viewer", "operator", "service", "admin"]
Access = Literal["read", "write", "readwrite", "deny"]
Action = Literal["read", "write"]  # read = subscribe/receive, write = publish

ROLES: tuple[Role, ...] = get_args(Role)
ACCESSES: tuple[Access, ...] = get_args(Access)

_CLIENT = "%c"
_USER = "%u"


@dataclass(frozen=True, slots=True)
class AclRule:
    topic: str
    access: Access

    def __post_init__(self) -> None:
        if self.access not in ACCESSES:
            raise InvalidRuleError(f"access must be one of {ACCESSES}, got {self.access!r}")
        try:
            validate_filter(self.topic, placeholders=True)
        except InvalidTopicFilterError as exc:
            raise InvalidRuleError(str(exc)) from exc

    def speaks_about(self, action: Action) -> bool:
        return self.access in ("deny", "readwrite") or self.access == action


def _rules(*pairs: tuple[str, Access]) -> tuple[AclRule, ...]:
    return tuple(AclRule(topic, access) for topic, access in pairs)


ROLE_DEFAULTS: Mapping[Role, tuple[AclRule, ...]] = MappingProxyType(
    {
        "device": _rules(
            ("ems/%c/telemetry", "write"),
            ("ems/%c/status", "write"),
            ("ems/%c/cmd/ack", "write"),
            ("ems/%c/cmd", "read"),
        ),
        "viewer": _rules(("ems/#", "read")),
        "operator": _rules(("ems/#", "read"), ("ems/+/cmd", "write")),
        "service": _rules(("ems/#", "readwrite")),
        "admin": _rules(("#", "readwrite")),
    }
)


def _is_level_value(value: str | None) -> bool:
    # A substituted value must stay one literal level, or a client id such as "x/#" or "+"
    # would turn "ems/%c/cmd" into a wildcard.
    if not value:
        return False
    return not any(ch in value for ch in ("/", SINGLE, MULTI, "\0"))


@dataclass(frozen=True, slots=True)
class _Compiled:
    levels: tuple[str, ...]
    reads: bool
    writes: bool
    deny: bool
    needs_client: bool
    needs_user: bool

    @classmethod
    def of(cls, rule: AclRule) -> _Compiled:
        levels = tuple(rule.topic.split("/"))
        return cls(
            levels=levels,
            reads=rule.access in ("read", "readwrite"),
            writes=rule.access in ("write", "readwrite"),
            deny=rule.access == "deny",
            needs_client=_CLIENT in levels,
            needs_user=_USER in levels,
        )

    def speaks_about(self, action: Action) -> bool:
        return self.deny or (self.reads if action == "read" else self.writes)

    def resolve(self, client_id: str | None, username: str | None) -> tuple[str, ...] | None:
        """Levels with placeholders filled in, or None if a needed value is unusable."""
        if not (self.needs_client or self.needs_user):
            return self.levels
        values = {_CLIENT: client_id, _USER: username}
        resolved: list[str] = []
        for level in self.levels:
            if level in values:
                value = values[level]
                if value is None or not _is_level_value(value):
                    return None
                resolved.append(value)
            else:
                resolved.append(level)
        return tuple(resolved)


@dataclass(frozen=True)
class Principal:
    """Who holds a token, and what its rules let it do. Immutable; replace it on change."""

    token_id: UUID
    role: Role
    label: str
    device_id: str | None
    rules: tuple[AclRule, ...]
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", tuple(self.rules))

    @cached_property
    def _compiled(self) -> tuple[_Compiled, ...]:
        # Parsed once per principal (not a dataclass field, so asdict/eq/hash ignore it).
        return tuple(_Compiled.of(rule) for rule in self.rules)

    def is_expired(self, now: datetime | None = None) -> bool:
        if self.expires_at is None:
            return False
        return (now or datetime.now(UTC)) >= self.expires_at

    def _identity(
        self, client_id: str | None, username: str | None
    ) -> tuple[str | None, str | None]:
        # Device tokens are bound to their device id as username and client id (the broker
        # enforces that), so it is the natural value of %c/%u where no connection exists.
        return (
            client_id if client_id is not None else self.device_id,
            username if username is not None else self.device_id,
        )

    def can(
        self,
        action: Action,
        topic: str,
        *,
        client_id: str | None = None,
        username: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """May this principal publish (write) to or receive (read) from a concrete topic?"""
        if not is_valid_topic_name(topic) or self.is_expired(now):
            return False
        client, user = self._identity(client_id, username)
        topic_levels = topic.split("/")
        for rule in self._compiled:
            if not rule.speaks_about(action):
                continue
            levels = rule.resolve(client, user)
            if levels is not None and match_levels(levels, topic_levels):
                return not rule.deny
        return False

    def can_subscribe(
        self,
        topic_filter: str,
        *,
        client_id: str | None = None,
        username: str | None = None,
        now: datetime | None = None,
    ) -> bool:
        """Allowed only if a read rule covers every topic the filter could match.

        The check is conservative: a deny rule that overlaps the filter before any read rule
        covers it refuses the whole subscription, and two read rules that only together cover
        the filter do not count. Narrower subscriptions always remain possible.
        """
        if not is_valid_filter(topic_filter) or self.is_expired(now):
            return False
        client, user = self._identity(client_id, username)
        filter_levels = topic_filter.split("/")
        for rule in self._compiled:
            if not rule.speaks_about("read"):
                continue
            levels = rule.resolve(client, user)
            if levels is None:
                continue
            if rule.deny:
                if overlap_levels(levels, filter_levels):
                    return False
            elif covers_levels(levels, filter_levels):
                return True
        return False

    def can_read_device(self, device_id: str, *, now: datetime | None = None) -> bool:
        """The REST/WebSocket view of a device: may this principal read its telemetry?"""
        if not is_valid_device_id(device_id):
            return False
        return self.can("read", telemetry_topic(device_id), now=now)

    def readable_devices(
        self, device_ids: Iterable[str], *, now: datetime | None = None
    ) -> list[str]:
        return [device_id for device_id in device_ids if self.can_read_device(device_id, now=now)]


def default_rules(role: Role) -> tuple[AclRule, ...]:
    if role not in ROLES:
        raise InvalidRuleError(f"role must be one of {ROLES}, got {role!r}")
    return ROLE_DEFAULTS[role]
