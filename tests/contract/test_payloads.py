"""Valid and invalid payloads of wire contract v1, judged as the platform judges them."""

import copy
import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from ems_contract import (
    MAX_BATCH_BYTES,
    MAX_BATCH_SAMPLES,
    MEASUREMENTS,
    Ack,
    RejectReason,
    Sample,
    SetIntervalCommand,
    SetRelayCommand,
    Status,
    command_adapter,
    encode,
    format_timestamp,
    last_will,
    parse_telemetry,
    parse_timestamp,
)

PHASE = {
    "voltage_rms": 230.4,
    "current_rms": 4.98,
    "power_watt": 1102.5,
    "power_var": 210.0,
    "power_va": 1147.4,
    "power_factor": 0.961,
    "voltage_thd": 1.8,
    "current_thd": 6.2,
    "energy_kwh": 10423.118,
}


def sample(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "v": 1,
        "ts": "2026-11-22T08:15:03.000Z",
        "seq": 48213,
        "boot": "3f9c2a1e",
        "phases": {"A": dict(PHASE), "B": dict(PHASE), "C": dict(PHASE)},
    }
    base.update(changes)
    return base


def judge(payload: Any, device: str = "dev1") -> tuple[list[Sample], list[RejectReason]]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    verdict = parse_telemetry(device, raw)
    return verdict.samples, [r.reason for r in verdict.rejected]


def test_architecture_example_is_valid() -> None:
    samples, rejected = judge(sample())
    assert rejected == []
    (s,) = samples
    assert s.ts == datetime(2026, 11, 22, 8, 15, 3, tzinfo=UTC)
    assert set(s.phases) == {"A", "B", "C"}
    assert s.phases["A"].energy_kwh == 10423.118


def test_single_phase_and_integer_numbers() -> None:
    phases = {"A": {k: int(v) if k != "power_factor" else 1 for k, v in PHASE.items()}}
    samples, rejected = judge(sample(phases=phases))
    assert rejected == [] and samples[0].phases["A"].voltage_rms == 230.0


@pytest.mark.parametrize(
    "ts, expected",
    [
        ("2026-11-22T09:15:03+01:00", datetime(2026, 11, 22, 8, 15, 3, tzinfo=UTC)),
        ("2026-11-22T03:15:03.5-05:00", datetime(2026, 11, 22, 8, 15, 3, 500000, tzinfo=UTC)),
        ("2026-11-22t08:15:03z", datetime(2026, 11, 22, 8, 15, 3, tzinfo=UTC)),
        (1795335303000, datetime(2026, 11, 22, 8, 15, 3, tzinfo=UTC)),
    ],
)
def test_timestamps_normalise_to_utc(ts: Any, expected: datetime) -> None:
    samples, rejected = judge(sample(ts=ts))
    assert rejected == []
    assert samples[0].ts == expected and samples[0].ts.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "ts",
    [
        "2026-11-22T08:15:03",  # naive
        "2026-11-22 08:15:03",  # naive, space
        "2026-11-22",  # date only
        "yesterday",
        1795335303,  # seconds, not milliseconds
        1795335303000.0,  # float
        True,
        None,
        "2026-13-22T08:15:03Z",
    ],
)
def test_bad_timestamps_rejected(ts: Any) -> None:
    samples, rejected = judge(sample(ts=ts))
    assert samples == [] and rejected == [RejectReason.INVALID_SAMPLE]


def test_non_finite_numbers_rejected() -> None:
    raw = json.dumps(sample()).replace("230.4", "NaN", 1).encode()
    assert judge(raw)[1] == [RejectReason.INVALID_JSON]
    raw = json.dumps(sample()).replace("4.98", "Infinity", 1).encode()
    assert judge(raw)[1] == [RejectReason.INVALID_JSON]
    raw = json.dumps(sample()).replace("4.98", "1e999", 1).encode()
    assert judge(raw)[1] == [RejectReason.INVALID_SAMPLE]
    with pytest.raises(ValidationError):
        Sample.model_validate(sample(phases={"A": dict(PHASE, voltage_rms=math.nan)}))


@pytest.mark.parametrize("field", MEASUREMENTS)
@pytest.mark.parametrize("value", ["230.4", None, [1], {"x": 1}, True])
def test_wrong_types_rejected(field: str, value: Any) -> None:
    phases = {"A": dict(PHASE, **{field: value})}
    assert judge(sample(phases=phases)) == ([], [RejectReason.INVALID_SAMPLE])


@pytest.mark.parametrize("field", MEASUREMENTS)
def test_missing_field_rejected(field: str) -> None:
    phase = dict(PHASE)
    del phase[field]
    assert judge(sample(phases={"A": phase}))[1] == [RejectReason.INVALID_SAMPLE]


@pytest.mark.parametrize(
    "changes",
    [
        {"phases": {"D": PHASE}},
        {"phases": {"a": PHASE}},
        {"phases": {}},
        {"phases": {"A": dict(PHASE, frequency=50.0)}},
        {"phases": {"A": dict(PHASE, power_factor=1.2)}},
        {"phases": {"A": dict(PHASE, voltage_rms=-1)}},
        {"extra": 1},
        {"seq": -1},
        {"seq": "1"},
        {"seq": 1.5},
        {"boot": ""},
        {"boot": "has space"},
        {"units": {"energy": "J"}},
        {"units": {"power": "MW"}},
    ],
)
def test_invalid_samples(changes: dict[str, Any]) -> None:
    assert judge(sample(**changes)) == ([], [RejectReason.INVALID_SAMPLE])


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"{not json", RejectReason.INVALID_JSON),
        (b"[" * 100_000, RejectReason.INVALID_JSON),  # too deep for any parser: not a crash
        (b"\xff\xfe", RejectReason.NOT_UTF8),
        (b"[1, 2]", RejectReason.NOT_OBJECT),
        (b'"text"', RejectReason.NOT_OBJECT),
        (json.dumps(sample(v=2)).encode(), RejectReason.UNSUPPORTED_VERSION),
        (
            json.dumps({k: v for k, v in sample().items() if k != "v"}).encode(),
            RejectReason.UNSUPPORTED_VERSION,
        ),
        (b" " * (MAX_BATCH_BYTES + 1), RejectReason.OVERSIZE),
    ],
)
def test_message_level_rejections(payload: bytes, reason: RejectReason) -> None:
    assert judge(payload) == ([], [reason])


def test_payload_naming_another_device_rejected() -> None:
    assert judge(sample(device_id="dev2")) == ([], [RejectReason.DEVICE_MISMATCH])
    assert judge(sample(device_id="dev1"))[1] == []
    batch = {"v": 1, "device_id": "dev2", "samples": [sample()]}
    assert judge(batch) == ([], [RejectReason.DEVICE_MISMATCH])


def test_batch_judges_each_sample_on_its_own() -> None:
    bad = sample(seq=2, phases={"A": dict(PHASE, current_rms="x")})
    other = sample(seq=3, device_id="dev9")
    batch = {"v": 1, "samples": [sample(seq=1), bad, other, sample(seq=4)]}
    verdict = parse_telemetry("dev1", json.dumps(batch).encode())
    assert verdict.batch
    assert [s.seq for s in verdict.samples] == [1, 4]
    assert [(r.index, r.reason) for r in verdict.rejected] == [
        (1, RejectReason.INVALID_SAMPLE),
        (2, RejectReason.DEVICE_MISMATCH),
    ]
    assert "current_rms" in verdict.rejected[0].detail


@pytest.mark.parametrize(
    "batch",
    [
        {"v": 1, "samples": []},
        {"v": 1, "samples": "nope"},
        {"v": 1, "samples": [sample()], "extra": True},
        {"v": 1, "samples": [sample()] * (MAX_BATCH_SAMPLES + 1)},
    ],
)
def test_invalid_batches(batch: dict[str, Any]) -> None:
    raw = json.dumps(batch).encode()
    expected = RejectReason.OVERSIZE if len(raw) > MAX_BATCH_BYTES else RejectReason.INVALID_BATCH
    assert judge(raw) == ([], [expected])


def test_units_are_normalised() -> None:
    phases = {"A": dict(PHASE, energy_kwh=5000.0, power_watt=1.5, power_var=0.2, power_va=1.6)}
    (s,), _ = judge(sample(phases=phases, units={"energy": "Wh", "power": "kW"}))
    n = s.normalized()
    assert n.units is None
    a = n.phases["A"]
    assert (a.energy_kwh, a.power_watt, a.power_var, a.power_va) == pytest.approx(
        (5.0, 1500.0, 200.0, 1600.0)
    )
    assert a.voltage_rms == PHASE["voltage_rms"]
    (m,), _ = judge(sample(units={"energy": "MWh"}))
    assert m.normalized().phases["B"].energy_kwh == pytest.approx(10423118.0)
    (k,), _ = judge(sample(units={"energy": "kWh", "power": "W"}))
    assert k.normalized().phases == k.phases


def test_normalizing_copies_only_to_convert() -> None:
    (s,), _ = judge(sample())
    assert s.normalized() is s  # frozen, so sharing is safe
    (k,), _ = judge(sample(units={}))
    assert k.units is not None and k.normalized().units is None
    assert k.normalized().phases == k.phases


def test_sample_roundtrip_through_wire() -> None:
    (s,), _ = judge(sample(ts="2026-11-22T09:15:03.250+01:00"))
    wire = json.loads(encode(s))
    assert wire["ts"] == "2026-11-22T08:15:03.250Z"
    assert judge(wire)[0] == [s]


def test_format_timestamp() -> None:
    assert format_timestamp(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000Z"
    with pytest.raises(ValueError):
        format_timestamp(datetime(2026, 1, 2))
    assert parse_timestamp("2026-01-02T03:04:05Z").tzinfo is UTC


def test_status_and_last_will() -> None:
    assert json.loads(encode(last_will())) == {"v": 1, "state": "offline"}
    s = Status.model_validate(
        {
            "v": 1,
            "state": "online",
            "ts": "2026-11-22T08:15:03Z",
            "boot": "b",
            "agent": "ems-device/0.1.0",
            "relays": {"A": True},
            "backlog": 0,
            "future": 1,
        }
    )
    assert s.relays == {"A": True}
    for bad in (
        {"v": 1, "state": "sleeping"},
        {"v": 1, "state": "online", "backlog": -1},
        {"v": 1, "state": "online", "relays": {"D": True}},
        {"state": "online"},
    ):
        with pytest.raises(ValidationError):
            Status.model_validate(bad)


def test_commands() -> None:
    cid = str(uuid.uuid4())
    cmd = command_adapter.validate_python(
        {
            "v": 1,
            "id": cid,
            "name": "set_relay",
            "args": {"phase": "A", "on": False},
            "expires": "2026-11-22T08:20:00Z",
        }
    )
    assert isinstance(cmd, SetRelayCommand) and cmd.args.on is False
    assert json.loads(encode(cmd))["expires"] == "2026-11-22T08:20:00.000Z"
    assert command_adapter.validate_python({"v": 1, "id": cid, "name": "ping"}).name == "ping"
    interval = command_adapter.validate_python(
        {"v": 1, "id": cid, "name": "set_interval", "args": {"seconds": 5}}
    )
    assert isinstance(interval, SetIntervalCommand) and interval.args.seconds == 5
    for bad in (
        {"v": 1, "id": cid, "name": "reboot", "args": {}},
        {"v": 1, "id": "not-a-uuid", "name": "ping"},
        {"v": 1, "id": cid, "name": "set_relay", "args": {"phase": "D", "on": True}},
        {"v": 1, "id": cid, "name": "set_relay", "args": {"phase": "A", "on": "yes"}},
        {"v": 1, "id": cid, "name": "set_interval", "args": {"seconds": 0}},
        {"v": 1, "id": cid, "name": "set_relay", "args": {"phase": "A"}},
    ):
        with pytest.raises(ValidationError):
            command_adapter.validate_python(bad)


def test_acks() -> None:
    cid = uuid.uuid4()
    ack = Ack.model_validate(
        {
            "v": 1,
            "id": str(cid),
            "status": "ok",
            "ts": 1795335303000,
            "result": {"relay": "A", "on": False},
        }
    )
    assert ack.id == cid
    with pytest.raises(ValidationError):
        Ack.model_validate({"v": 1, "id": str(cid), "status": "done", "ts": 1795335303000})
    with pytest.raises(ValidationError):
        Ack.model_validate({"v": 1, "id": str(cid), "status": "ok"})


def test_models_are_immutable() -> None:
    (s,), _ = judge(sample())
    with pytest.raises(ValidationError):
        s.seq = 5  # type: ignore[misc]
    assert copy.deepcopy(s) == s
