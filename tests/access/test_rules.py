"""Principal: role defaults, %c/%u, first match, deny, subscribe coverage, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from ems_access import ROLE_DEFAULTS, AclRule, InvalidRuleError, Principal, Role


def principal(
    role: Role = "viewer",
    rules: tuple[AclRule, ...] | None = None,
    *,
    device_id: str | None = None,
    expires_at: datetime | None = None,
) -> Principal:
    return Principal(
        token_id=uuid4(),
        role=role,
        label="test",
        device_id=device_id,
        rules=ROLE_DEFAULTS[role] if rules is None else rules,
        expires_at=expires_at,
    )


def rules(*pairs: tuple[str, str]) -> tuple[AclRule, ...]:
    return tuple(AclRule(topic, access) for topic, access in pairs)  # type: ignore[arg-type]


# -- rule validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "access"),
    [("ems/#/x", "read"), ("", "read"), ("ems/a", "admin"), ("ems/dev-%c", "read")],
)
def test_invalid_rules_are_refused(topic: str, access: str) -> None:
    with pytest.raises(InvalidRuleError):
        AclRule(topic, access)  # type: ignore[arg-type]


def test_role_defaults_are_exactly_the_contract() -> None:
    assert ROLE_DEFAULTS["device"] == rules(
        ("ems/%c/telemetry", "write"),
        ("ems/%c/status", "write"),
        ("ems/%c/cmd/ack", "write"),
        ("ems/%c/cmd", "read"),
    )
    assert ROLE_DEFAULTS["viewer"] == rules(("ems/#", "read"))
    assert ROLE_DEFAULTS["operator"] == rules(("ems/#", "read"), ("ems/+/cmd", "write"))
    assert ROLE_DEFAULTS["service"] == rules(("ems/#", "readwrite"))
    assert ROLE_DEFAULTS["admin"] == rules(("#", "readwrite"))


# -- role defaults --------------------------------------------------------------------------


def test_device_defaults() -> None:
    dev = principal("device", device_id="dev1")
    for kind in ("telemetry", "status", "cmd/ack"):
        assert dev.can("write", f"ems/dev1/{kind}")
        assert not dev.can("write", f"ems/dev2/{kind}")
        assert not dev.can("read", f"ems/dev1/{kind}")
    assert dev.can("read", "ems/dev1/cmd")
    assert not dev.can("write", "ems/dev1/cmd")
    assert not dev.can("read", "ems/dev2/cmd")
    assert dev.can_subscribe("ems/dev1/cmd")
    assert not dev.can_subscribe("ems/#")
    assert not dev.can_subscribe("ems/+/cmd")
    assert not dev.can_subscribe("ems/dev1/#")
    assert not dev.can_subscribe("#")


def test_device_client_id_is_what_counts() -> None:
    dev = principal("device", device_id="dev1")
    # The broker passes the connection's client id; %c follows it.
    assert dev.can("write", "ems/dev9/telemetry", client_id="dev9")
    assert not dev.can("write", "ems/dev1/telemetry", client_id="dev9")


def test_viewer_defaults() -> None:
    viewer = principal("viewer")
    assert viewer.can("read", "ems/dev1/telemetry")
    assert not viewer.can("write", "ems/dev1/telemetry")
    assert not viewer.can("write", "ems/dev1/cmd")
    assert viewer.can_subscribe("ems/#")
    assert viewer.can_subscribe("ems/+/status")
    assert not viewer.can_subscribe("#")
    assert not viewer.can("read", "other/topic")


def test_operator_defaults_read_everything_and_command() -> None:
    op = principal("operator")
    assert op.can("read", "ems/dev1/telemetry")
    assert op.can("read", "ems/dev1/cmd")  # read rule first, write rule does not shadow it
    assert op.can("write", "ems/dev1/cmd")
    assert not op.can("write", "ems/dev1/cmd/ack")
    assert not op.can("write", "ems/dev1/telemetry")


def test_service_and_admin() -> None:
    service = principal("service")
    assert service.can("write", "ems/dev1/telemetry")
    assert service.can_subscribe("ems/#")
    assert not service.can("read", "other/x")
    admin = principal("admin")
    assert admin.can("write", "anything/at/all")
    assert admin.can_subscribe("#")
    # '#' does not reach $-topics (MQTT 4.7.2), not even for an admin.
    assert not admin.can("read", "$SYS/broker/uptime")
    assert not admin.can_subscribe("$SYS/#")


# -- placeholders -----------------------------------------------------------------------------


def test_username_placeholder() -> None:
    p = principal("viewer", rules(("users/%u/#", "readwrite")))
    assert p.can("write", "users/alice/x", username="alice")
    assert not p.can("write", "users/bob/x", username="alice")
    assert not p.can("write", "users/alice/x")  # no username, no match
    assert p.can_subscribe("users/alice/#", username="alice")


@pytest.mark.parametrize("evil", ["+", "#", "a/b", "", "x\0"])
def test_placeholder_values_cannot_become_wildcards(evil: str) -> None:
    p = principal("viewer", rules(("ems/%c/cmd", "read"), ("u/%u", "write")))
    assert not p.can("read", "ems/x/cmd", client_id=evil)
    assert not p.can_subscribe("ems/+/cmd", client_id=evil)
    assert not p.can_subscribe("ems/#", client_id=evil)
    assert not p.can("write", "u/x", username=evil)


def test_literal_percent_levels_in_topics_do_not_match_placeholders() -> None:
    p = principal("device", device_id="dev1")
    assert not p.can("write", "ems/%c/telemetry", client_id="dev1")


# -- ordering and deny ----------------------------------------------------------------------


def test_first_match_wins_and_deny_shadows() -> None:
    p = principal("viewer", rules(("ems/secret/#", "deny"), ("ems/#", "readwrite")))
    assert not p.can("read", "ems/secret/x")
    assert not p.can("write", "ems/secret/x")
    assert p.can("read", "ems/public/x")
    reordered = principal("viewer", rules(("ems/#", "readwrite"), ("ems/secret/#", "deny")))
    assert reordered.can("read", "ems/secret/x")


def test_rules_only_speak_about_their_action() -> None:
    p = principal("viewer", rules(("ems/a", "write"), ("ems/#", "read")))
    assert p.can("write", "ems/a")
    assert p.can("read", "ems/a")
    assert not p.can("write", "ems/b")


def test_default_deny() -> None:
    p = principal("viewer", ())
    assert not p.can("read", "ems/x")
    assert not p.can("write", "ems/x")
    assert not p.can_subscribe("ems/x")


def test_wildcard_topics_are_never_concrete() -> None:
    admin = principal("admin")
    assert not admin.can("write", "ems/+/x")
    assert not admin.can("read", "ems/#")
    assert not admin.can("write", "")


# -- subscription coverage ----------------------------------------------------------------------


def test_subscribe_needs_one_read_rule_covering_the_filter() -> None:
    p = principal("viewer", rules(("ems/+/telemetry", "read"), ("ems/+/status", "read")))
    assert p.can_subscribe("ems/dev1/telemetry")
    assert p.can_subscribe("ems/+/telemetry")
    assert not p.can_subscribe("ems/dev1/+")  # would also match ems/dev1/cmd
    assert not p.can_subscribe("ems/#")


def test_subscribe_refused_if_a_deny_rule_carves_into_it() -> None:
    p = principal("viewer", rules(("ems/secret/#", "deny"), ("ems/#", "read")))
    assert not p.can_subscribe("ems/#")
    assert not p.can_subscribe("ems/+/x")
    assert p.can_subscribe("ems/public/#")
    assert not p.can_subscribe("ems/secret/x")


def test_subscribe_write_only_rule_grants_nothing() -> None:
    p = principal("viewer", rules(("ems/#", "write")))
    assert not p.can_subscribe("ems/#")


def test_subscribe_allow_before_deny_wins() -> None:
    p = principal("viewer", rules(("ems/#", "read"), ("ems/secret/#", "deny")))
    assert p.can_subscribe("ems/#")


def test_invalid_subscription_filters() -> None:
    admin = principal("admin")
    for bad in ("", "ems/#/x", "ems/a+"):
        assert not admin.can_subscribe(bad)


# -- expiry ---------------------------------------------------------------------------------


def test_expired_principal_can_nothing() -> None:
    now = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    p = principal("admin", expires_at=now)
    before = now - timedelta(seconds=1)
    assert p.can("read", "ems/x", now=before)
    assert p.can_subscribe("#", now=before)
    assert not p.is_expired(before)
    assert p.is_expired(now)
    assert not p.can("read", "ems/x", now=now)
    assert not p.can_subscribe("#", now=now)
    assert not p.can_read_device("dev1", now=now)


def test_expiry_against_the_real_clock() -> None:
    assert principal("admin", expires_at=datetime.now(UTC) + timedelta(hours=1)).can("read", "x")
    assert not principal("admin", expires_at=datetime.now(UTC) - timedelta(seconds=1)).can(
        "read", "x"
    )


# -- device views for REST/WebSocket ------------------------------------------------------------


def test_readable_devices() -> None:
    p = principal("viewer", rules(("ems/dev1/#", "read"), ("ems/dev3/telemetry", "read")))
    assert p.readable_devices(["dev1", "dev2", "dev3", "bad/id", "+"]) == ["dev1", "dev3"]
    assert principal("device", device_id="dev1").readable_devices(["dev1"]) == []


def test_principal_is_immutable_and_comparable() -> None:
    p = principal("viewer")
    with pytest.raises(AttributeError):
        p.role = "admin"  # type: ignore[misc]
    assert p == Principal(p.token_id, p.role, p.label, p.device_id, list(p.rules))  # type: ignore[arg-type]
