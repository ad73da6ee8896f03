"""Commands from ``ems/<id>/cmd``: at most once, never when expired, always answered.

An id is written to SQLite *before* the command runs and its ack after, so a redelivery
(QoS 1 may deliver twice, also across an agent restart) gets the stored ack again instead
of a second execution. A command interrupted by a crash is reported, not retried.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ems_contract import (
    Ack,
    AckStatus,
    PingCommand,
    SetIntervalCommand,
    SetRelayCommand,
    command_adapter,
    describe,
    encode,
    format_timestamp,
)
from ems_device.clock import Clock
from ems_device.db import DeviceDb
from ems_device.relay import Relay, RelayError, UnknownPhaseError

log = logging.getLogger(__name__)

MAX_COMMAND_BYTES = 64 * 1024
INTERRUPTED = "interrupted by an agent restart before it finished; not executed again"


@dataclass(frozen=True, slots=True)
class Outcome:
    """What to send back: ``payload`` is the encoded ack (None if the sender is unknowable)."""

    payload: bytes | None
    status: AckStatus | None = None
    executed: bool = False
    #: A relay or the interval changed: the retained status must be republished.
    state_changed: bool = False


class CommandMemory:
    def __init__(self, db: DeviceDb, keep: int = 1000, keep_s: float = 7 * 86400) -> None:
        self._db = db
        self._keep = keep
        self._keep_s = keep_s

    def lookup(self, command_id: str) -> tuple[bool, bytes | None]:
        """(known, stored ack)."""
        rows = self._db.query("SELECT ack FROM commands WHERE id = ?", (command_id,))
        if not rows:
            return False, None
        return True, None if rows[0][0] is None else bytes(rows[0][0])

    def begin(self, command_id: str, now: float) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO commands (id, received_at, ack) VALUES (?, ?, NULL)",
                (command_id, now),
            )

    def finish(self, command_id: str, ack: bytes, now: float) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO commands (id, received_at, ack) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET ack = excluded.ack",
                (command_id, now, ack),
            )

    def prune(self, now: float) -> int:
        with self._db.transaction() as conn:
            removed = conn.execute(
                "DELETE FROM commands WHERE received_at < ?", (now - self._keep_s,)
            ).rowcount
            removed += conn.execute(
                "DELETE FROM commands WHERE id NOT IN "
                "(SELECT id FROM commands ORDER BY received_at DESC LIMIT ?)",
                (self._keep,),
            ).rowcount
        return int(removed)


def _command_id(data: Any) -> str | None:
    """The command's id if it is a UUID: the one thing an ack cannot do without."""
    if isinstance(data, dict) and isinstance(data.get("id"), str):
        try:
            return str(uuid.UUID(data["id"]))
        except ValueError:
            return None
    return None


class CommandHandler:
    def __init__(
        self,
        memory: CommandMemory,
        relay: Relay,
        clock: Clock,
        set_interval: Callable[[float], None],
        info: Callable[[], dict[str, Any]],
    ) -> None:
        self._memory = memory
        self._relay = relay
        self._clock = clock
        self._set_interval = set_interval
        self._info = info

    def _ack(
        self,
        command_id: str,
        status: AckStatus,
        result: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> bytes:
        ack = Ack(
            v=1,
            id=uuid.UUID(command_id),
            status=status,
            ts=self._clock.now(),
            result=result,
            error=error,
        )
        return encode(ack)

    def handle(self, payload: bytes) -> Outcome:
        now = self._clock.now().timestamp()
        data: Any = None
        if len(payload) <= MAX_COMMAND_BYTES:
            try:
                data = json.loads(payload)
            except ValueError:
                data = None
        command_id = _command_id(data)
        if command_id is None:
            log.warning("dropping a command without a usable id (%d bytes)", len(payload))
            return Outcome(payload=None)

        known, stored = self._memory.lookup(command_id)
        if known:
            log.info("command %s redelivered: acknowledging again, not executing", command_id)
            if stored is None:
                stored = self._ack(command_id, "error", error=INTERRUPTED)
                self._memory.finish(command_id, stored, now)
            return Outcome(payload=stored, status=json.loads(stored).get("status"))

        try:
            command = command_adapter.validate_python(data)
        except ValidationError as exc:
            ack = self._ack(command_id, "rejected", error=describe(exc))
            self._memory.finish(command_id, ack, now)
            log.warning("command %s rejected: %s", command_id, describe(exc))
            return Outcome(payload=ack, status="rejected")

        if command.expires is not None and command.expires <= self._clock.now():
            why = f"expired at {format_timestamp(command.expires)}"
            ack = self._ack(command_id, "expired", error=why)
            self._memory.finish(command_id, ack, now)
            log.info("command %s (%s) expired before it arrived", command_id, command.name)
            return Outcome(payload=ack, status="expired")

        self._memory.begin(command_id, now)
        status, result, error, changed = self._execute(command)
        ack = self._ack(command_id, status, result=result, error=error)
        self._memory.finish(command_id, ack, now)
        log.info("command %s (%s): %s", command_id, command.name, status)
        return Outcome(payload=ack, status=status, executed=True, state_changed=changed)

    def _execute(
        self, command: SetRelayCommand | PingCommand | SetIntervalCommand
    ) -> tuple[AckStatus, dict[str, Any] | None, str | None, bool]:
        if isinstance(command, SetRelayCommand):
            phase, on = command.args.phase, command.args.on
            try:
                self._relay.set(phase, on)
            except UnknownPhaseError as exc:
                return "rejected", None, str(exc), False
            except RelayError as exc:
                return "error", None, str(exc), True
            return "ok", {"phase": phase, "on": on, "relays": self._relay.states()}, None, True
        if isinstance(command, SetIntervalCommand):
            self._set_interval(command.args.seconds)
            return "ok", {"interval": command.args.seconds}, None, True
        return "ok", {"pong": True, **self._info()}, None, False
