"""Turn one MQTT message into an Envelope: validated rows, rejections, device updates."""

from __future__ import annotations

import functools
import operator
from datetime import datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from ems_contract import (
    MEASUREMENTS,
    PHASES,
    Ack,
    PhaseReading,
    Rejection,
    RejectReason,
    Sample,
    Status,
    TopicError,
    TopicKind,
    describe,
    load_json_object,
    parse_telemetry,
    parse_topic,
)
from ems_contract.sample_fast import decode_sample
from ems_platform.ingest.envelope import (
    AckUpdate,
    Envelope,
    Incoming,
    MessageKind,
    Problem,
    ReadingRow,
    StatusUpdate,
)

_Control = TypeVar("_Control", Status, Ack)

#: Status and ack payloads are tiny; anything this big is a mistake or an attack.
MAX_CONTROL_BYTES = 16 * 1024


def _problem(rejection: Rejection) -> Problem:
    return Problem(rejection.reason.value, rejection.detail, rejection.index)


_TS = operator.attrgetter("ts")
#: The fast path's phases are a dict keyed by "A", "B" and "C" only: with three keys, they
#: are all of PHASES, which is in name order already.
_ALL_PHASES = len(PHASES)
if list(PHASES) != sorted(PHASES):
    raise RuntimeError("PHASES must be in name order")
# A reading's values are its model's __dict__ in field order (already floats: the strict
# float fields turn JSON integers into floats): one call instead of nine attribute reads.
# That needs the fields declared in MEASUREMENTS order and nothing else in the __dict__
# (extra="forbid").
if tuple(PhaseReading.model_fields) != MEASUREMENTS:
    raise RuntimeError("PhaseReading's fields must be MEASUREMENTS, in that order")


def _add_rows(
    rows: list[ReadingRow], device_id: str, sample: Sample, received_at: datetime
) -> None:
    """One row per phase of a normalised sample, phases in name order."""
    phases = sample.phases
    ts, seq, boot = sample.ts, sample.seq, sample.boot
    for phase in sorted(phases):
        values = tuple(phases[phase].__dict__.values())
        rows.append(ReadingRow(device_id, phase, ts, values, None, (), seq, boot, received_at))


#: Topics repeat with every message of a device; parsing one costs more than looking it up.
#: Bounded, so a client inventing topics only evicts entries.
TOPIC_CACHE_SIZE = 16384


@functools.lru_cache(maxsize=TOPIC_CACHE_SIZE)
def topic_device(topic: str) -> tuple[str, TopicKind] | None:
    try:
        parsed = parse_topic(topic)
    except TopicError:
        return None
    return parsed.device_id, parsed.kind


class Judge:
    """Pure and synchronous, no state: deltas and quality flags need what is stored, so the
    store computes them inside the batch's transaction (``quality.plan_batch``)."""

    def judge(self, incoming: Incoming) -> Envelope:
        parsed = topic_device(incoming.topic)
        if parsed is None:
            return Envelope(
                incoming,
                MessageKind.OTHER,
                problems=[Problem(RejectReason.INVALID_TOPIC.value, f"topic {incoming.topic!r}")],
            )
        device_id, kind = parsed
        if kind is TopicKind.TELEMETRY:
            return self._telemetry(incoming, device_id)
        if kind is TopicKind.STATUS:
            return self._status(incoming, device_id)
        if kind is TopicKind.ACK:
            return self._ack(incoming, device_id)
        return Envelope(
            incoming,
            MessageKind.OTHER,
            device_id,
            problems=[Problem(RejectReason.INVALID_TOPIC.value, f"ingest does not take {kind}")],
        )

    def _telemetry(self, incoming: Incoming, device_id: str) -> Envelope:
        fast = decode_sample(device_id, incoming.payload)
        if fast is not None:
            # The common case (one sample in kWh and W, nothing wrong), without the models.
            envelope = Envelope(incoming, MessageKind.TELEMETRY, device_id)
            ts, seq, boot, phases = fast
            received_at = incoming.received_at
            envelope.rows = [
                ReadingRow(device_id, phase, ts, phases[phase], None, (), seq, boot, received_at)
                # A sample of all three phases (nearly every one) needs no sorting.
                for phase in (PHASES if len(phases) == _ALL_PHASES else sorted(phases))
            ]
            return envelope
        verdict = parse_telemetry(device_id, incoming.payload)
        envelope = Envelope(incoming, MessageKind.TELEMETRY, device_id)
        if verdict.rejected:
            envelope.problems = [_problem(r) for r in verdict.rejected]
        samples = [s.normalized() for s in verdict.samples]
        if len(samples) > 1:
            # Oldest first: a replayed backlog is then not "late" against itself.
            samples.sort(key=_TS)
        rows = envelope.rows
        for sample in samples:
            _add_rows(rows, device_id, sample, incoming.received_at)
        return envelope

    def _control_object(self, incoming: Incoming) -> dict[str, Any] | Problem:
        data = load_json_object(incoming.payload, limit=MAX_CONTROL_BYTES)
        if isinstance(data, Rejection):
            return _problem(data)
        return data

    def _control(
        self, incoming: Incoming, envelope: Envelope, model: type[_Control], reason: RejectReason
    ) -> _Control | None:
        """A status or an ack, validated; or None with the problem noted on the envelope."""
        data = self._control_object(incoming)
        if isinstance(data, Problem):
            envelope.problems.append(data)
            return None
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            envelope.problems.append(Problem(reason.value, describe(exc)))
            return None

    def _status(self, incoming: Incoming, device_id: str) -> Envelope:
        envelope = Envelope(incoming, MessageKind.STATUS, device_id)
        status = self._control(incoming, envelope, Status, RejectReason.INVALID_STATUS)
        if status is None:
            return envelope
        envelope.status = StatusUpdate(
            device_id=device_id,
            online=status.state == "online",
            status=status.model_dump(mode="json", exclude_none=True),
            # A last will carries no time of its own: it happened when the broker sent it.
            status_at=status.ts or incoming.received_at,
            received_at=incoming.received_at,
        )
        return envelope

    def _ack(self, incoming: Incoming, device_id: str) -> Envelope:
        envelope = Envelope(incoming, MessageKind.ACK, device_id)
        ack = self._control(incoming, envelope, Ack, RejectReason.INVALID_ACK)
        if ack is None:
            return envelope
        envelope.ack = AckUpdate(
            device_id=device_id,
            command_id=ack.id,
            state=ack.status,
            acked_at=ack.ts,
            result=ack.result,
            error=ack.error,
        )
        return envelope
