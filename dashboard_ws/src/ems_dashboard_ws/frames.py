"""JSON frames of the dashboard WebSocket (ARCHITECTURE section 6).

An MQTT message is encoded once, however many browsers receive it: ``Envelope`` keeps the
validated JSON text of the payload and splices it into each frame instead of parsing and
re-serialising it per client.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


def _no_constants(name: str) -> Any:
    # NaN and Infinity are not JSON; a browser's JSON.parse would choke on the whole frame.
    raise ValueError(name)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One MQTT message as received from the broker, ready to be framed for browsers."""

    topic: str
    #: The payload's JSON text when it is JSON, else None.
    json_text: str | None
    #: For non-JSON payloads: the text (UTF-8) or base64 of the bytes, and which it is.
    raw_text: str = ""
    encoding: Literal["utf-8", "base64"] = "utf-8"

    @classmethod
    def from_mqtt(cls, topic: str, payload: bytes) -> Envelope:
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            return cls(topic, None, base64.b64encode(payload).decode("ascii"), "base64")
        try:
            json.loads(text, parse_constant=_no_constants)
        except ValueError:
            return cls(topic, None, text, "utf-8")
        return cls(topic, text.strip())

    @property
    def is_json(self) -> bool:
        return self.json_text is not None

    def frame(self, *, retained: bool) -> str:
        """``{"type":"message","topic","payload","retained"}``; non-JSON adds ``raw``."""
        head = '{"type":"message","topic":' + json.dumps(self.topic) + ',"payload":'
        flag = "true" if retained else "false"
        if self.json_text is not None:
            return head + self.json_text + ',"retained":' + flag + "}"
        return (
            head
            + json.dumps(self.raw_text)
            + ',"raw":true,"encoding":"'
            + self.encoding
            + '","retained":'
            + flag
            + "}"
        )

    def payload_value(self) -> Any:
        """The payload as a Python value (for tests and diagnostics, not the hot path)."""
        return json.loads(self.json_text) if self.json_text is not None else self.raw_text


def subscribed(topics: list[str], denied: list[str]) -> str:
    return json.dumps({"type": "subscribed", "topics": topics, "denied": denied})


def unsubscribed(topics: list[str]) -> str:
    return json.dumps({"type": "unsubscribed", "topics": topics})


def error(detail: str) -> str:
    return json.dumps({"type": "error", "detail": detail})


def lag(dropped: int) -> str:
    return json.dumps({"type": "lag", "dropped": dropped})


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SubscribeRequest(_Request):
    type: Literal["subscribe"]
    topics: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        min_length=1, max_length=100
    )


class UnsubscribeRequest(_Request):
    type: Literal["unsubscribe"]
    topics: list[Annotated[str, Field(min_length=1, max_length=1024)]] = Field(
        min_length=1, max_length=100
    )


class PingRequest(_Request):
    """An application-level ping for clients that cannot see protocol pings."""

    type: Literal["ping"]


ClientRequest = Annotated[
    SubscribeRequest | UnsubscribeRequest | PingRequest, Field(discriminator="type")
]
_request_adapter: TypeAdapter[SubscribeRequest | UnsubscribeRequest | PingRequest] = TypeAdapter(
    ClientRequest
)


class BadRequest(ValueError):
    """A client frame that is not one of the requests the adapter understands."""


def parse_request(text: str) -> SubscribeRequest | UnsubscribeRequest | PingRequest:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BadRequest(f"frame is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("frame must be a JSON object with a 'type'")
    kind = data.get("type")
    if kind not in ("subscribe", "unsubscribe", "ping"):
        raise BadRequest(
            f"unknown frame type {kind!r}; expected 'subscribe', 'unsubscribe' or 'ping'"
        )
    try:
        return _request_adapter.validate_python(data)
    except ValidationError as exc:
        parts = []
        for item in exc.errors(include_url=False, include_input=False):
            loc = ".".join(str(p) for p in item["loc"][1:]) or "frame"
            parts.append(f"{loc}: {item['msg']}")
        raise BadRequest("; ".join(parts)[:500]) from exc


PONG = json.dumps({"type": "pong"})
