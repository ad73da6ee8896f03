"""Topic names of wire contract v1 (ARCHITECTURE section 2): builders and a strict parser."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

ROOT = "ems"
DEVICE_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
_DEVICE_ID_RE = re.compile(rf"^{DEVICE_ID_PATTERN}$")


class TopicKind(enum.StrEnum):
    TELEMETRY = "telemetry"
    STATUS = "status"
    COMMAND = "cmd"
    ACK = "cmd/ack"


class TopicError(ValueError):
    """A topic or device id that the contract does not allow."""


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    device_id: str
    kind: TopicKind


def is_valid_device_id(device_id: str) -> bool:
    return bool(_DEVICE_ID_RE.fullmatch(device_id))


def check_device_id(device_id: str) -> str:
    if not is_valid_device_id(device_id):
        raise TopicError(f"device id must match {DEVICE_ID_PATTERN}, got {device_id!r}")
    return device_id


def topic(device_id: str, kind: TopicKind) -> str:
    return f"{ROOT}/{check_device_id(device_id)}/{kind.value}"


def telemetry_topic(device_id: str) -> str:
    return topic(device_id, TopicKind.TELEMETRY)


def status_topic(device_id: str) -> str:
    return topic(device_id, TopicKind.STATUS)


def command_topic(device_id: str) -> str:
    return topic(device_id, TopicKind.COMMAND)


def ack_topic(device_id: str) -> str:
    return topic(device_id, TopicKind.ACK)


def device_filter(device_id: str) -> str:
    """Every topic of one device: ``ems/<id>/#``."""
    return f"{ROOT}/{check_device_id(device_id)}/#"


def all_filter(kind: TopicKind) -> str:
    """One kind of topic for every device, e.g. ``ems/+/telemetry``."""
    return f"{ROOT}/+/{kind.value}"


def parse_topic(name: str) -> ParsedTopic:
    """Split a concrete contract topic into device id and kind, or raise TopicError."""
    parts = name.split("/")
    if len(parts) < 3 or parts[0] != ROOT:
        raise TopicError(f"not an EMS topic: {name!r}")
    device_id = check_device_id(parts[1])
    rest = "/".join(parts[2:])
    try:
        kind = TopicKind(rest)
    except ValueError:
        raise TopicError(f"unknown EMS topic kind {rest!r} in {name!r}") from None
    return ParsedTopic(device_id, kind)
