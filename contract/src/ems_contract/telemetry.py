"""Judging a telemetry payload: every sample on its own, every rejection with a reason."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ems_contract.models import MAX_BATCH_BYTES, MAX_BATCH_SAMPLES, Batch, Sample


class RejectReason(enum.StrEnum):
    """Machine-readable reasons a message or a sample is quarantined."""

    OVERSIZE = "oversize"
    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    NOT_OBJECT = "not_object"
    UNSUPPORTED_VERSION = "unsupported_version"
    DEVICE_MISMATCH = "device_mismatch"
    INVALID_BATCH = "invalid_batch"
    INVALID_SAMPLE = "invalid_sample"
    INVALID_TOPIC = "invalid_topic"
    INVALID_STATUS = "invalid_status"
    INVALID_ACK = "invalid_ack"


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: RejectReason
    detail: str
    #: Position in a batch; None for a single sample or the whole message.
    index: int | None = None
    raw: Any = None


@dataclass(slots=True)
class TelemetryVerdict:
    samples: list[Sample] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    batch: bool = False


def describe(error: ValidationError) -> str:
    """A short, stable text of a validation error: ``loc: message; ...``."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in item["loc"]) or "payload"
        parts.append(f"{loc}: {item['msg']}")
    return "; ".join(parts)[:1000]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not JSON")


def load_json_object(payload: bytes, limit: int = MAX_BATCH_BYTES) -> dict[str, Any] | Rejection:
    """Decode a payload into a JSON object or say why not."""
    if len(payload) > limit:
        return Rejection(RejectReason.OVERSIZE, f"{len(payload)} bytes > limit {limit}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Rejection(RejectReason.NOT_UTF8, str(exc))
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        return Rejection(RejectReason.INVALID_JSON, str(exc)[:300])
    except RecursionError:
        return Rejection(RejectReason.INVALID_JSON, "nested too deeply")
    if not isinstance(data, dict):
        return Rejection(RejectReason.NOT_OBJECT, f"payload is a JSON {type(data).__name__}")
    if data.get("v") != 1:
        return Rejection(RejectReason.UNSUPPORTED_VERSION, f"v={data.get('v')!r}, expected 1")
    return data


def _judge_sample(device_id: str, raw: Any, index: int | None) -> Sample | Rejection:
    if isinstance(raw, dict) and raw.get("device_id") not in (None, device_id):
        return Rejection(
            RejectReason.DEVICE_MISMATCH,
            f"payload names device {raw.get('device_id')!r}, topic names {device_id!r}",
            index,
            raw,
        )
    try:
        return Sample.model_validate(raw)
    except ValidationError as exc:
        return Rejection(RejectReason.INVALID_SAMPLE, describe(exc), index, raw)


class _WholeBatch(BaseModel):
    """A batch whose every sample is valid: what the fast path accepts in one go."""

    model_config = ConfigDict(extra="forbid", strict=True)

    v: Literal[1]
    samples: list[Sample] = Field(min_length=1, max_length=MAX_BATCH_SAMPLES)
    device_id: str | None = None


def parse_telemetry_fast(device_id: str, payload: bytes) -> TelemetryVerdict | None:
    """The verdict of a payload with nothing to reject, parsed and validated in one pass of
    pydantic-core; None when there is anything to reject or any doubt, so the exact path
    decides and words the reasons.

    Acceptance must be exactly that of the exact path (``load_json_object`` then
    ``Sample.model_validate``), which tests/contract/test_fast_path.py checks: the size and
    UTF-8 checks are done first (ASCII is the whole of a valid payload: device ids, boot ids
    and timestamps are ASCII), NaN/Infinity/1e999 still fail as non-finite floats, duplicate
    keys keep the last value in both parsers, and a device_id other than the topic's defers.
    """
    if len(payload) > MAX_BATCH_BYTES or not payload.isascii():
        return None
    try:
        if b'"samples"' not in payload:
            sample = Sample.model_validate_json(payload)
            if sample.device_id not in (None, device_id):
                return None
            return TelemetryVerdict(samples=[sample])
        batch = _WholeBatch.model_validate_json(payload)
    except ValidationError:
        return None
    if batch.device_id not in (None, device_id) or any(
        s.device_id not in (None, device_id) for s in batch.samples
    ):
        return None
    return TelemetryVerdict(samples=batch.samples, batch=True)


def parse_telemetry(device_id: str, payload: bytes) -> TelemetryVerdict:
    """Judge a telemetry payload from ``ems/<device_id>/telemetry``.

    A single sample or a batch; bad samples are rejected one by one and the rest kept.
    """
    fast = parse_telemetry_fast(device_id, payload)
    if fast is not None:
        return fast
    return parse_telemetry_exact(device_id, payload)


def parse_telemetry_exact(device_id: str, payload: bytes) -> TelemetryVerdict:
    """Every check one after the other, each rejection with its own reason and detail."""
    verdict = TelemetryVerdict()
    data = load_json_object(payload)
    if isinstance(data, Rejection):
        verdict.rejected.append(data)
        return verdict
    if "samples" not in data:
        judged = _judge_sample(device_id, data, None)
        (verdict.rejected if isinstance(judged, Rejection) else verdict.samples).append(judged)  # type: ignore[arg-type]
        return verdict
    verdict.batch = True
    if data.get("device_id") not in (None, device_id):
        verdict.rejected.append(
            Rejection(
                RejectReason.DEVICE_MISMATCH,
                f"batch names device {data.get('device_id')!r}, topic names {device_id!r}",
            )
        )
        return verdict
    try:
        batch = Batch.model_validate(data)
    except ValidationError as exc:
        verdict.rejected.append(Rejection(RejectReason.INVALID_BATCH, describe(exc)))
        return verdict
    for index, raw in enumerate(batch.samples):
        judged = _judge_sample(device_id, raw, index)
        if isinstance(judged, Rejection):
            verdict.rejected.append(judged)
        else:
            verdict.samples.append(judged)
    return verdict
