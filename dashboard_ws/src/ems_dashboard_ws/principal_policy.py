"""An ``ems_access`` principal seen through the adapter's ``ReadPolicy``.

Subscriptions follow the broker's practice rather than ``Principal.can_subscribe``'s strict
"a single read rule must cover the whole filter": a filter is accepted when some of its
topics are readable, and every message is then checked against the concrete topic. That is
what lets a viewer scoped to ``ems/dev1/#`` use the dashboard page, which subscribes
``ems/+/status``; a filter through which nothing at all is readable is denied.
"""

from __future__ import annotations

from ems_access.rules import Principal
from ems_access.topics import covers_levels, overlap_levels

_PLACEHOLDERS = ("%c", "%u")


class PrincipalPolicy:
    __slots__ = ("_rules", "principal")

    def __init__(self, principal: Principal) -> None:
        self.principal = principal
        # A WebSocket has no client id or username of its own; like the access engine,
        # placeholders stand for the device a device token is bound to.
        self._rules: list[tuple[str, tuple[str, ...]]] = []
        for rule in principal.rules:
            levels = tuple(rule.topic.split("/"))
            if any(level in _PLACEHOLDERS for level in levels):
                if principal.device_id is None:
                    continue
                levels = tuple(
                    principal.device_id if level in _PLACEHOLDERS else level for level in levels
                )
            self._rules.append((rule.access, levels))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PrincipalPolicy) and other.principal == self.principal

    def __hash__(self) -> int:
        return hash(self.principal)

    def can_read(self, topic: str) -> bool:
        return self.principal.can("read", topic)

    def may_subscribe(self, topic_filter: str) -> bool:
        if self.principal.can_subscribe(topic_filter):
            return True
        if self.principal.is_expired():
            return False
        wanted = topic_filter.split("/")
        for access, levels in self._rules:
            if access == "deny":
                if covers_levels(levels, wanted):
                    return False
            elif access in ("read", "readwrite") and overlap_levels(levels, wanted):
                return True
        return False
