"""Judging messages into envelopes (pure logic: no broker, no database)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from ems_contract import MEASUREMENTS
from ems_platform.ingest.envelope import Envelope, Incoming, MessageKind, Verdict
from ems_platform.ingest.judge import Judge
from tests.platform.payloads import BASE_TS, encode, sample

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def judge(topic: str, payload: bytes, judge_: Judge | None = None) -> Envelope:
    return (judge_ or Judge()).judge(Incoming(topic, payload, NOW))


def test_good_sample_gives_one_row_per_phase() -> None:
    env = judge("ems/dev1/telemetry", encode(sample()))
    assert env.kind is MessageKind.TELEMETRY
    assert env.device_id == "dev1"
    assert [r.phase for r in env.rows] == ["A", "B", "C"]
    # Deltas and flags need what is stored: the store computes them, not the judge.
    assert all(r.ts == BASE_TS and r.flags == () for r in env.rows)
    assert all(r.energy_delta_kwh is None for r in env.rows)
    assert env.problems == []
    assert env.verdict(stored=3) is Verdict.ACCEPTED
    assert env.verdict(stored=0) is Verdict.DUPLICATE
    assert env.rows[0].received_at == NOW


def test_rows_hold_the_nine_measurements_in_wire_order_as_floats() -> None:
    payload = sample(phases=("C", "A"))
    payload["phases"]["C"] = {name: i for i, name in enumerate(MEASUREMENTS)}  # JSON integers
    payload["phases"]["C"]["power_factor"] = 1
    env = judge("ems/dev1/telemetry", encode(payload))
    assert [r.phase for r in env.rows] == ["A", "C"]
    c = env.rows[1]
    assert c.values == (0.0, 1.0, 2.0, 3.0, 4.0, 1.0, 6.0, 7.0, 8.0)
    assert all(type(v) is float for row in env.rows for v in row.values)
    assert env.rows[0].values == tuple(payload["phases"]["A"][name] for name in MEASUREMENTS)
    assert (c.seq, c.boot, c.energy_delta_kwh, c.flags) == (0, "boot1", None, ())


def test_batch_with_one_bad_sample_keeps_the_good_ones() -> None:
    bad = sample(1)
    bad["phases"]["A"]["voltage_rms"] = "230"
    payload = encode({"v": 1, "samples": [sample(0), bad, sample(2)]})
    env = judge("ems/dev1/telemetry", payload)
    assert len(env.rows) == 6
    assert {r.seq for r in env.rows} == {0, 2}
    assert [(p.reason, p.index) for p in env.problems] == [("invalid_sample", 1)]
    assert env.verdict(stored=6) is Verdict.PARTIAL
    detail = json.loads(env.detail_json() or "null")
    assert detail[0]["index"] == 1 and detail[0]["reason"] == "invalid_sample"
    assert "voltage_rms" in detail[0]["detail"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b'{"v": 1, "ts": NaN}', "invalid_json"),
        (b"\xff\xfe", "not_utf8"),
        (b"[1, 2]", "not_object"),
        (encode({**sample(), "v": 2}), "unsupported_version"),
        (encode(sample(device_id="other")), "device_mismatch"),
        (encode({**sample(), "phases": {"D": sample()["phases"]["A"]}}), "invalid_sample"),
        (encode({**sample(), "ts": "2026-11-22T08:15:03"}), "invalid_sample"),
        (b"{" + b" " * (600 * 1024) + b"}", "oversize"),
    ],
)
def test_malformed_payloads_are_quarantined_with_their_reason(payload: bytes, reason: str) -> None:
    env = judge("ems/dev1/telemetry", payload)
    assert env.rows == []
    assert env.reason == reason
    assert env.verdict(stored=0) is Verdict.QUARANTINED


def test_units_are_normalised_to_kwh_and_watts() -> None:
    payload = sample(phases=("A",), units={"energy": "Wh", "power": "kW"})
    payload["phases"]["A"].update(energy_kwh=12_345.0, power_watt=1.5, power_var=0.25, power_va=2.0)
    row = judge("ems/dev1/telemetry", encode(payload)).rows[0]
    values = dict(zip(("v", "i", "p", "q", "s"), row.values[:5], strict=True))
    assert values["p"] == pytest.approx(1500.0)
    assert values["q"] == pytest.approx(250.0)
    assert values["s"] == pytest.approx(2000.0)
    assert row.values[-1] == pytest.approx(12.345)


def test_mwh_energy_is_converted() -> None:
    payload = sample(phases=("A",), units={"energy": "MWh"})
    payload["phases"]["A"]["energy_kwh"] = 1.5
    assert judge("ems/dev1/telemetry", encode(payload)).rows[0].values[-1] == pytest.approx(1500.0)


@pytest.mark.parametrize(
    "ts",
    ["2026-11-22T10:15:03.000+02:00", "2026-11-22T03:15:03-05:00", "2026-11-22T08:15:03Z"],
)
def test_time_zone_offsets_are_normalised_to_utc(ts: str) -> None:
    row = judge("ems/dev1/telemetry", encode(sample(ts=ts))).rows[0]
    assert row.ts == BASE_TS
    assert row.ts.utcoffset() is not None and row.ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_epoch_milliseconds_are_accepted() -> None:
    millis = int(BASE_TS.timestamp() * 1000)
    assert judge("ems/dev1/telemetry", encode(sample(ts=millis))).rows[0].ts == BASE_TS


def test_batch_samples_come_out_in_time_order() -> None:
    payload = encode({"v": 1, "samples": [sample(2, energy=100), sample(1, energy=100)]})
    rows = [r for r in judge("ems/dev1/telemetry", payload).rows if r.phase == "A"]
    assert [r.seq for r in rows] == [1, 2]


def test_status_online_and_last_will() -> None:
    online = {"v": 1, "state": "online", "ts": "2026-11-22T08:00:00Z", "boot": "b", "backlog": 0}
    env = judge("ems/dev1/status", encode(online))
    assert env.kind is MessageKind.STATUS and env.status is not None
    assert env.status.online is True
    assert env.status.status_at == datetime(2026, 11, 22, 8, tzinfo=UTC)
    assert env.status.status["backlog"] == 0
    will = judge("ems/dev1/status", b'{"v":1,"state":"offline"}')
    assert will.status is not None and will.status.online is False
    assert will.status.status_at == NOW  # a last will carries no time: use arrival
    assert will.verdict(0) is Verdict.ACCEPTED


def test_bad_status_is_quarantined() -> None:
    env = judge("ems/dev1/status", b'{"v":1,"state":"sleeping"}')
    assert env.status is None and env.reason == "invalid_status"


def test_ack_and_bad_ack() -> None:
    cid = uuid.uuid4()
    ack = {"v": 1, "id": str(cid), "status": "ok", "ts": "2026-11-22T08:00:00Z", "result": {}}
    env = judge("ems/dev1/cmd/ack", encode(ack))
    assert env.ack is not None and env.ack.command_id == cid and env.ack.state == "ok"
    bad = judge("ems/dev1/cmd/ack", encode({"v": 1, "id": "nope", "status": "ok"}))
    assert bad.ack is None and bad.reason == "invalid_ack"


@pytest.mark.parametrize("topic", ["ems/bad.id/telemetry", "other/x", "ems/dev1/cmd", "ems/d/x"])
def test_topics_outside_the_contract_are_quarantined(topic: str) -> None:
    env = judge(topic, encode(sample()))
    assert env.reason == "invalid_topic"
    assert env.verdict(0) is Verdict.QUARANTINED
