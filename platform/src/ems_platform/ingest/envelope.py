"""What one MQTT message becomes on its way to the database."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias
from uuid import UUID

import msgspec

from ems_contract import MEASUREMENTS


class Verdict(enum.StrEnum):
    """``raw_events.verdict``: what became of a message."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    PARTIAL = "partial"
    QUARANTINED = "quarantined"


class Flag(enum.StrEnum):
    """Quality flags on ``energy_readings.flags``."""

    FIRST_READING = "first_reading"
    COUNTER_RESET = "counter_reset"
    OUT_OF_ORDER = "out_of_order"
    SUSPICIOUS_JUMP = "suspicious_jump"
    FUTURE_TIMESTAMP = "future_timestamp"
    GAP = "gap"


class MessageKind(enum.StrEnum):
    TELEMETRY = "telemetry"
    STATUS = "status"
    ACK = "ack"
    OTHER = "other"


#: Whatever the source needs to acknowledge a message to the broker once it is durable
#: (for paho: the message id). Opaque to the judge, the batcher and the store.
AckHandle: TypeAlias = object


class Incoming(msgspec.Struct):
    """A message as the broker delivered it, stamped when the platform read it.

    ``ack`` is None for messages that need no acknowledgement (QoS 0, tests).

    This and the other per-message types (``ReadingRow``, ``Envelope``) are msgspec Structs,
    not dataclasses: a Struct is built in C (a 9-field row in about 0.14 µs against 0.31 for
    a slotted dataclass's generated ``__init__``), its fields read as fast as slots, and the
    ingest builds five of them per 3-phase message.
    """

    topic: str
    payload: bytes
    received_at: datetime
    retained: bool = False
    ack: AckHandle | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """One rejection: the whole message (index None) or one sample of a batch."""

    reason: str
    detail: str
    index: int | None = None
    #: Machine-readable specifics merged into the audit row's detail (e.g. a conflict's key).
    extra: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "detail": self.detail,
            "index": self.index,
            **(self.extra or {}),
        }


#: Column order of a reading row, shared by the staging table and COPY.
READING_COLUMNS: tuple[str, ...] = (
    "device_id",
    "phase",
    "ts",
    *MEASUREMENTS,
    "energy_delta_kwh",
    "flags",
    "seq",
    "boot",
    "received_at",
)
#: The same without ``flags``, for rows with none: the column's default ``{}`` fills it, and
#: encoding an empty array per row was a measurable share of the ingest's CPU.
UNFLAGGED_COLUMNS: tuple[str, ...] = tuple(c for c in READING_COLUMNS if c != "flags")


class ReadingRow(msgspec.Struct, gc=False):
    """One phase of one normalised sample (kWh, W, UTC): one ``energy_readings`` row.

    Treat as immutable, except for the planner, which sets ``energy_delta_kwh`` and ``flags``
    of the batch's own rows in place. Not tracked by the garbage collector (``gc=False``):
    its fields are strings, numbers, datetimes and tuples of those, so it can never be part
    of a reference cycle, and the collector need not walk the hundred thousand or so that a
    busy ingest holds."""

    device_id: str
    phase: str
    ts: datetime
    values: tuple[float, ...]  # the nine MEASUREMENTS in wire order
    energy_delta_kwh: float | None
    flags: tuple[str, ...]
    seq: int
    boot: str
    received_at: datetime

    @property
    def key(self) -> tuple[str, str, datetime]:
        return (self.device_id, self.phase, self.ts)

    def record(self) -> tuple[Any, ...]:
        return (
            self.device_id,
            self.phase,
            self.ts,
            *self.values,
            self.energy_delta_kwh,
            list(self.flags),
            self.seq,
            self.boot,
            self.received_at,
        )

    def unflagged_record(self) -> tuple[Any, ...]:
        """``record`` without ``flags`` (``UNFLAGGED_COLUMNS``), for a row that has none."""
        return (
            self.device_id,
            self.phase,
            self.ts,
            *self.values,
            self.energy_delta_kwh,
            self.seq,
            self.boot,
            self.received_at,
        )


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    device_id: str
    online: bool
    status: dict[str, Any]
    status_at: datetime
    received_at: datetime


@dataclass(frozen=True, slots=True)
class AckUpdate:
    device_id: str
    command_id: UUID
    state: str
    acked_at: datetime
    result: dict[str, Any] | None
    error: str | None


class Envelope(msgspec.Struct):
    """A judged message: rows to store, problems to record, and device/command updates."""

    incoming: Incoming
    kind: MessageKind
    device_id: str | None = None
    rows: list[ReadingRow] = msgspec.field(default_factory=list)
    problems: list[Problem] = msgspec.field(default_factory=list)
    status: StatusUpdate | None = None
    ack: AckUpdate | None = None
    #: Rows refused at write time because their key is stored with other values. Set (not
    #: appended) by the store on every write attempt, so a retried batch stays right.
    conflicts: list[Problem] = msgspec.field(default_factory=list)

    @property
    def rejections(self) -> list[Problem]:
        """Everything refused of this message: by the judge, then by the store."""
        return [*self.problems, *self.conflicts]

    @property
    def weight(self) -> int:
        """How much of a batch this envelope fills: its rows, at least one."""
        return max(1, len(self.rows))

    def verdict(self, stored: int) -> Verdict:
        """The verdict once ``stored`` of this envelope's rows were new to the database."""
        if self.problems or self.conflicts:
            kept = len(self.rows) > len(self.conflicts)
            return Verdict.PARTIAL if kept else Verdict.QUARANTINED
        if self.rows and stored == 0:
            return Verdict.DUPLICATE
        return Verdict.ACCEPTED

    @property
    def reason(self) -> str | None:
        rejections = self.rejections
        return rejections[0].reason if rejections else None

    def detail_json(self) -> str | None:
        rejections = self.rejections
        if not rejections:
            return None
        return json.dumps([p.as_json() for p in rejections])
