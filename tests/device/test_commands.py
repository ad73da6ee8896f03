"""Command handling without a broker: at most once, expiry, rejection, acks per the contract."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ems_contract import Ack
from ems_device.commands import INTERRUPTED, CommandHandler, CommandMemory
from ems_device.db import DeviceDb
from ems_device.relay import MemoryRelay
from tests.device.fakes import ManualClock


class Harness:
    def __init__(self, db: DeviceDb) -> None:
        self.db = db
        self.clock = ManualClock()
        self.relay = MemoryRelay(("A", "B", "C"))
        self.intervals: list[float] = []
        self.handler = self.make_handler()

    def make_handler(self) -> CommandHandler:
        return CommandHandler(
            CommandMemory(self.db),
            self.relay,
            self.clock,
            self.intervals.append,
            lambda: {"boot": "b00t", "seq": 12},
        )

    def send(self, body: dict[str, Any] | bytes) -> tuple[Ack | None, bool, bool]:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        outcome = self.handler.handle(raw)
        ack = None if outcome.payload is None else Ack.model_validate_json(outcome.payload)
        if ack is not None:
            assert outcome.status == ack.status
        return ack, outcome.executed, outcome.state_changed


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    db = DeviceDb(tmp_path / "cmd.db")
    yield Harness(db)
    db.close()


def command(name: str, args: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"v": 1, "id": str(uuid.uuid4()), "name": name, "args": args, **extra}


def test_set_relay_executes_and_acks_ok(harness: Harness) -> None:
    cmd = command("set_relay", {"phase": "B", "on": False})
    ack, executed, changed = harness.send(cmd)
    assert ack is not None and ack.status == "ok"
    assert str(ack.id) == cmd["id"]
    assert ack.result == {"phase": "B", "on": False, "relays": {"A": True, "B": False, "C": True}}
    assert executed and changed
    assert harness.relay.history == [("B", False)]


def test_redelivery_is_reacked_not_reexecuted(harness: Harness) -> None:
    cmd = command("set_relay", {"phase": "A", "on": False})
    first, _, _ = harness.send(cmd)
    harness.relay.set("A", True)  # someone switched it back in between
    again, executed, changed = harness.send(cmd)
    assert again == first
    assert not executed and not changed
    assert harness.relay.states()["A"] is True
    assert harness.relay.history == [("A", False), ("A", True)]


def test_redelivery_after_a_restart_is_still_recognised(harness: Harness) -> None:
    cmd = command("ping", {})
    first, _, _ = harness.send(cmd)
    harness.handler = harness.make_handler()  # a new agent process, same database
    again, executed, _ = harness.send(cmd)
    assert again == first and not executed


def test_a_command_interrupted_by_a_crash_is_reported_not_rerun(harness: Harness) -> None:
    cmd = command("set_relay", {"phase": "A", "on": False})
    CommandMemory(harness.db).begin(cmd["id"], 0.0)  # recorded, then the agent died
    ack, executed, _ = harness.send(cmd)
    assert ack is not None and ack.status == "error" and ack.error == INTERRUPTED
    assert not executed and harness.relay.history == []


def test_expired_command_is_not_executed(harness: Harness) -> None:
    cmd = command("set_relay", {"phase": "A", "on": False}, expires="2026-11-22T07:59:59Z")
    ack, executed, _ = harness.send(cmd)
    assert ack is not None and ack.status == "expired"
    assert ack.error is not None and "2026-11-22T07:59:59.000Z" in ack.error
    assert not executed and harness.relay.history == []
    # Redelivered later: still expired, still not executed.
    assert harness.send(cmd)[0] == ack


def test_unexpired_command_runs(harness: Harness) -> None:
    cmd = command("set_relay", {"phase": "C", "on": False}, expires="2026-11-22T08:05:00Z")
    assert harness.send(cmd)[0].status == "ok"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"name": "explode", "args": {}}, "name"),
        ({"name": "set_relay", "args": {"phase": "D", "on": True}}, "phase"),
        ({"name": "set_relay", "args": {"phase": "A", "on": "yes"}}, "on"),
        ({"name": "set_interval", "args": {"seconds": 0}}, "seconds"),
        ({"name": "ping", "args": {}, "v": 2}, "v"),
    ],
)
def test_invalid_commands_are_rejected_with_the_reason(
    harness: Harness, body: dict[str, Any], needle: str
) -> None:
    cmd = {"v": 1, "id": str(uuid.uuid4()), **body}
    ack, executed, _ = harness.send(cmd)
    assert ack is not None and ack.status == "rejected"
    assert ack.error is not None and needle in ack.error
    assert not executed and harness.relay.history == []


def test_relay_on_a_phase_the_device_lacks_is_rejected(tmp_path: Path) -> None:
    db = DeviceDb(tmp_path / "one.db")
    harness = Harness(db)
    harness.relay = MemoryRelay(("A",))
    harness.handler = harness.make_handler()
    ack, _, _ = harness.send(command("set_relay", {"phase": "C", "on": False}))
    assert ack is not None and ack.status == "rejected" and "phase C" in (ack.error or "")
    db.close()


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe", b"not json", b"[1, 2]", b'{"v": 1, "name": "ping"}', b'{"id": "nope"}'],
)
def test_garbage_without_an_id_cannot_be_acked(harness: Harness, raw: bytes) -> None:
    assert harness.send(raw) == (None, False, False)


def test_ping_and_set_interval(harness: Harness) -> None:
    ack, _, changed = harness.send(command("ping", {}))
    assert ack is not None and ack.result == {"pong": True, "boot": "b00t", "seq": 12}
    assert not changed
    ack, _, changed = harness.send(command("set_interval", {"seconds": 2.5}))
    assert ack is not None and ack.status == "ok" and ack.result == {"interval": 2.5}
    assert harness.intervals == [2.5] and changed


def test_memory_is_bounded(harness: Harness) -> None:
    memory = CommandMemory(harness.db, keep=5, keep_s=100.0)
    for i in range(10):
        memory.finish(str(uuid.uuid4()), b"{}", float(i))
    assert memory.prune(now=10.0) == 5
    assert harness.db.query("SELECT count(*) FROM commands")[0][0] == 5
    assert memory.prune(now=1000.0) == 5
