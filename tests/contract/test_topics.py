import pytest

from ems_contract import (
    TopicError,
    TopicKind,
    ack_topic,
    all_filter,
    command_topic,
    device_filter,
    is_valid_device_id,
    parse_topic,
    status_topic,
    telemetry_topic,
)


def test_builders() -> None:
    assert telemetry_topic("dev-1") == "ems/dev-1/telemetry"
    assert status_topic("dev_1") == "ems/dev_1/status"
    assert command_topic("D1") == "ems/D1/cmd"
    assert ack_topic("d") == "ems/d/cmd/ack"
    assert device_filter("d") == "ems/d/#"
    assert all_filter(TopicKind.TELEMETRY) == "ems/+/telemetry"


@pytest.mark.parametrize(
    "topic, device, kind",
    [
        ("ems/a/telemetry", "a", TopicKind.TELEMETRY),
        ("ems/a/status", "a", TopicKind.STATUS),
        ("ems/a/cmd", "a", TopicKind.COMMAND),
        ("ems/a/cmd/ack", "a", TopicKind.ACK),
        ("ems/" + "x" * 64 + "/status", "x" * 64, TopicKind.STATUS),
    ],
)
def test_parse_roundtrip(topic: str, device: str, kind: TopicKind) -> None:
    parsed = parse_topic(topic)
    assert (parsed.device_id, parsed.kind) == (device, kind)


@pytest.mark.parametrize(
    "topic",
    [
        "ems/a",
        "other/a/telemetry",
        "ems/a/unknown",
        "ems/a/telemetry/extra",
        "ems/+/telemetry",
        "ems/#",
        "ems/a b/status",
        "ems//status",
        "ems/" + "x" * 65 + "/status",
        "ems/ä/status",
        "/ems/a/status",
    ],
)
def test_parse_rejects(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_topic(topic)


@pytest.mark.parametrize("bad", ["", "a/b", "a+", "#", "a.b", "x" * 65, "é"])
def test_builders_refuse_bad_ids(bad: str) -> None:
    assert not is_valid_device_id(bad)
    with pytest.raises(TopicError):
        telemetry_topic(bad)
