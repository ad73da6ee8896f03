"""Our ordered rules as EMQX's per-client ``acl`` list (returned by the authn hook).

EMQX checks that list in order, first match wins, and a rule only matches its own action,
which is our semantics for publish (``write``). For subscribe, ours is stricter: a ``deny``
rule that merely *overlaps* the requested filter refuses it, while EMQX only lets a deny
rule match filters inside it, and EMQX never re-checks deliveries. So ``[deny
ems/dev1/#, read ems/#]`` would let an EMQX client subscribe to ``ems/#`` and receive dev1.
When a token's rules have such a deny (one overlapping a later read rule), ``to_emqx_acl``
returns None: the hook then sends no list and EMQX asks ``/mqtt/acl``, which applies our
exact semantics. Placeholders are resolved here with the values of this login, so a client
id containing ``/``, ``+`` or ``#`` cannot widen a rule (such rules are dropped, exactly as
``Principal`` skips them).
"""

from __future__ import annotations

from typing import Any

from ems_access.rules import AclRule, Principal
from ems_access.topics import filters_overlap

_PLACEHOLDERS = ("%c", "%u")


def _level_value(value: str) -> bool:
    # "${" too: EMQX would expand a placeholder hidden in a client id.
    return bool(value) and "${" not in value and not any(ch in value for ch in "/+#\0")


def _resolve(rule: AclRule, client_id: str, username: str) -> str | None:
    levels = rule.topic.split("/")
    if not any(level in _PLACEHOLDERS for level in levels):
        return rule.topic
    out: list[str] = []
    for level in levels:
        if level in _PLACEHOLDERS:
            value = client_id if level == "%c" else username
            if not _level_value(value):
                return None
            out.append(value)
        else:
            out.append(level)
    return "/".join(out)


def _action(access: str) -> str:
    return {"read": "subscribe", "write": "publish"}.get(access, "all")


def to_emqx_acl(principal: Principal, client_id: str, username: str) -> list[dict[str, Any]] | None:
    """EMQX ``acl`` rules equivalent to the principal's, or None if EMQX cannot express them."""
    resolved: list[tuple[str, str]] = []
    for rule in principal.rules:
        topic = _resolve(rule, client_id, username)
        if topic is not None:
            resolved.append((topic, rule.access))
    for index, (topic, access) in enumerate(resolved):
        if access != "deny":
            continue
        for later_topic, later_access in resolved[index + 1 :]:
            if later_access in ("read", "readwrite") and filters_overlap(topic, later_topic):
                return None
    acl: list[dict[str, Any]] = [
        {
            "permission": "deny" if access == "deny" else "allow",
            "action": _action(access),
            "topic": topic,
        }
        for topic, access in resolved
    ]
    # Our default is deny; EMQX's is allow unless configured, so say it explicitly.
    acl.append({"permission": "deny", "action": "all", "topic": "#"})
    return acl
