"""``/mqtt/auth``, ``/mqtt/acl``, ``/mqtt/superuser``: broker hooks (docs/auth-hooks.md).

Called by brokers, not users, so every call must come from a network in ``EMS_HOOK_ALLOW``
(loopback by default) and, when ``EMS_HOOK_SECRET`` is set, carry it in the
``X-EMS-Hook-Secret`` header (EMQX can send headers; mosquitto-go-auth cannot, so with
go-auth rely on the network rule and keep the platform on a private interface). A wrong
secret counts as a failed authentication of the caller's address.
"""

from __future__ import annotations

import hmac
import logging
from functools import cache
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ems_access.ratelimit import log_refusal
from ems_access.rules import Action, Principal
from ems_access.tokens import hash_token
from ems_platform.api.deps import RuntimeDep, client_address
from ems_platform.api.hooks import wire
from ems_platform.api.hooks.emqx import to_emqx_acl
from ems_platform.api.hooks.wire import BadHookRequest, HookCall
from ems_platform.api.runtime import Runtime

log = logging.getLogger(__name__)
router = APIRouter(prefix="/mqtt", tags=["broker hooks"], include_in_schema=True)

SECRET_HEADER = "x-ems-hook-secret"  # noqa: S105 - a header name
_SHARE_PREFIX = "$share/"
# go-auth's acc values (mosquitto's MOSQ_ACL_*): 1 read, 2 write, 3 both, 4 subscribe.
_READ, _WRITE, _SUBSCRIBE = 1, 2, 4


@cache
def _networks(spec: str) -> tuple[IPv4Network | IPv6Network, ...]:
    return tuple(ip_network(item.strip(), strict=False) for item in spec.split(",") if item.strip())


def _caller_refusal(request: Request, runtime: Runtime) -> Response | None:
    """A 403 for callers that are not our brokers, else None."""
    addr = client_address(request)
    try:
        ip = ip_address(addr)
    except ValueError:
        ip = None
    if ip is None or not any(ip in net for net in _networks(runtime.settings.hook_allow)):
        log_refusal("hook", addr, "caller not in EMS_HOOK_ALLOW")
        return JSONResponse({"detail": "hook caller not allowed"}, status_code=403)
    secret = runtime.settings.hook_secret
    if secret is not None:
        retry_after = runtime.limiter.blocked(addr)
        if retry_after > 0:
            log_refusal("hook", addr, "rate limited", retry_after=retry_after)
            return JSONResponse({"detail": "hook caller not allowed"}, status_code=403)
        presented = request.headers.get(SECRET_HEADER, "")
        if not hmac.compare_digest(presented.encode(), secret.get_secret_value().encode()):
            runtime.limiter.failed(addr)
            log_refusal("hook", addr, "missing or wrong hook secret")
            return JSONResponse({"detail": "hook caller not allowed"}, status_code=403)
    return None


async def _call(request: Request, runtime: Runtime) -> HookCall | Response:
    refusal = _caller_refusal(request, runtime)
    if refusal is not None:
        return refusal
    try:
        return await wire.read_call(request)
    except BadHookRequest as exc:
        return JSONResponse({"detail": f"unreadable hook request: {exc}"}, status_code=400)


def _limit_key(call: HookCall) -> str:
    if call.flavor == "emqx" and call.get("peerhost"):
        return call.get("peerhost")
    # go-auth does not forward the client's address: count failures per username instead.
    return f"mqtt-user:{call.get('username')}"


def _binding_problem(principal: Principal, client_id: str, username: str) -> str | None:
    if principal.role == "device" and not (client_id == username == principal.device_id):
        return "device token needs username and client id equal to its device id"
    return None


@router.post("/auth")
async def authenticate(request: Request, runtime: RuntimeDep) -> Response:
    call = await _call(request, runtime)
    if isinstance(call, Response):
        return call
    key = _limit_key(call)
    door = f"hook-{call.flavor}"
    retry_after = runtime.limiter.blocked(key)
    if retry_after > 0:
        log_refusal(door, key, "rate limited", retry_after=retry_after)
        return wire.deny(call, "rate limited", retry_after=retry_after)
    client_id, username, password = call.get("clientid"), call.get("username"), call.get("password")
    principal = await runtime.access.authenticate(password) if password else None
    if principal is None:
        runtime.limiter.failed(key)
        log_refusal(door, key, "invalid, expired or revoked token")
        return wire.deny(call, "invalid, expired or revoked token")
    problem = _binding_problem(principal, client_id, username)
    if problem is not None:
        log_refusal(door, key, problem)
        return wire.deny(call, problem)
    runtime.limiter.succeeded(key)
    runtime.hook_sessions.remember(client_id, hash_token(password), username)
    log.info("hook login: client %s as token %s (%s)", client_id, principal.token_id, door)
    if call.flavor != "emqx":
        return wire.allow(call)
    extra: dict[str, object] = {"is_superuser": False}
    acl = to_emqx_acl(principal, client_id, username)
    if acl is not None:
        extra["acl"] = acl
    if principal.expires_at is not None:
        extra["expire_at"] = int(principal.expires_at.timestamp())
    return wire.allow(call, **extra)


def _strip_share(topic: str) -> str:
    if topic.startswith(_SHARE_PREFIX):
        _, _, rest = topic[len(_SHARE_PREFIX) :].partition("/")
        return rest
    return topic


def _decide(principal: Principal, call: HookCall, client_id: str, username: str) -> bool:
    topic = call.get("topic")

    def can(action: Action) -> bool:
        return principal.can(action, topic, client_id=client_id, username=username)

    def can_subscribe() -> bool:
        return principal.can_subscribe(_strip_share(topic), client_id=client_id, username=username)

    if call.flavor == "emqx":
        action = call.get("action")
        if action == "publish":
            return can("write")
        if action == "subscribe":
            return can_subscribe()
        return False
    try:
        acc = int(call.get("acc"))
    except ValueError:
        return False
    if acc == _SUBSCRIBE:
        return can_subscribe()
    if acc not in (_READ, _WRITE, _READ | _WRITE):
        return False
    read_ok = not acc & _READ or can("read")
    write_ok = not acc & _WRITE or can("write")
    return read_ok and write_ok


@router.post("/acl")
async def authorize(request: Request, runtime: RuntimeDep) -> Response:
    call = await _call(request, runtime)
    if isinstance(call, Response):
        return call
    client_id, username = call.get("clientid"), call.get("username")
    session = runtime.hook_sessions.get(client_id)
    if session is None or session.username != username:
        log.info("hook ACL: client %s has no login known to this platform; denied", client_id)
        return wire.deny(call, "unknown client; log in again")
    principal = await runtime.access.lookup_hash(session.token_hash)
    if principal is None:
        runtime.hook_sessions.forget(client_id)
        return wire.deny(call, "token revoked or expired")
    if _binding_problem(principal, client_id, username) is not None:
        return wire.deny(call, "device binding")
    if _decide(principal, call, client_id, username):
        return wire.allow(call)
    log.debug("hook ACL: client %s denied %s", client_id, call.get("topic"))
    return wire.deny(call, "not allowed by the token's ACL")


@router.post("/superuser")
async def superuser(request: Request, runtime: RuntimeDep) -> Response:
    """go-auth's superuser check: nobody bypasses the ACL, admins included."""
    call = await _call(request, runtime)
    if isinstance(call, Response):
        return call
    return wire.deny(call, "no superusers")
