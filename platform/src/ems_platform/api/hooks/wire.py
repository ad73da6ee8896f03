"""Request and reply shapes of the brokers that call our hooks.

EMQX 5 renders every placeholder as a string (``"qos": "1"``) and sends what its template
says, so the documented template includes ``peerhost`` (authn) and ``action`` (authz), which
is how an EMQX call is told from a mosquitto-go-auth one (``acc``); ``?flavor=emqx|goauth``
overrides the guess. Bodies may be JSON or form-encoded (both brokers can send either).

Replies: EMQX reads ``200 {"result": "allow"|"deny"}`` (any other status means "ignore",
which would fall through to the next authenticator, so a refusal is always a 200 deny).
go-auth reads 2xx as allow and 4xx as deny in every response mode; the body satisfies its
``json`` mode (``{"ok", "error"}``) by default and its ``text`` mode with ``?response=text``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

Flavor = Literal["emqx", "goauth"]

MAX_BODY_BYTES = 16 * 1024


class BadHookRequest(ValueError):
    """A body we cannot read; answered 400 (never echoing the body: it may hold a secret)."""


@dataclass(frozen=True, slots=True)
class HookCall:
    flavor: Flavor
    fields: dict[str, str]
    text_replies: bool

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def read_call(request: Request) -> HookCall:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise BadHookRequest("body too large")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    fields: dict[str, str]
    if content_type == "application/x-www-form-urlencoded":
        try:
            parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError as exc:
            raise BadHookRequest("form body is not UTF-8") from exc
        fields = {key: values[-1] for key, values in parsed.items()}
    elif not body:
        fields = {}
    else:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadHookRequest("body is neither JSON nor a form") from exc
        if not isinstance(data, dict):
            raise BadHookRequest("JSON body must be an object")
        fields = {str(key): _as_text(value) for key, value in data.items()}
    requested = request.query_params.get("flavor", "").lower().replace("-", "")
    flavor: Flavor
    if requested in ("emqx", "goauth"):
        flavor = "emqx" if requested == "emqx" else "goauth"
    elif "acc" in fields:
        flavor = "goauth"
    elif "peerhost" in fields or "action" in fields:
        flavor = "emqx"
    else:
        flavor = "goauth"
    text = request.query_params.get("response", "").lower() == "text"
    return HookCall(flavor, fields, text)


def allow(call: HookCall, **emqx_extra: Any) -> Response:
    if call.flavor == "emqx":
        return JSONResponse({"result": "allow", **emqx_extra})
    if call.text_replies:
        return PlainTextResponse("ok")
    return JSONResponse({"ok": True, "error": ""})


def deny(call: HookCall, reason: str, *, retry_after: float = 0.0) -> Response:
    """Refuse; ``reason`` is a fixed phrase, never derived from the credentials."""
    if call.flavor == "emqx":
        return JSONResponse({"result": "deny"})
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after > 0 else None
    status = 429 if retry_after > 0 else 403
    if call.text_replies:
        return PlainTextResponse(reason, status_code=status, headers=headers)
    return JSONResponse({"ok": False, "error": reason}, status_code=status, headers=headers)
