"""``/ws`` and ``/ws/dashboard/{device_id}`` (ARCHITECTURE section 6)."""

from __future__ import annotations

import asyncio
import logging
import math

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from ems_access.ratelimit import log_refusal
from ems_contract import device_filter, is_valid_device_id
from ems_dashboard_ws import frames
from ems_dashboard_ws.credentials import PROTOCOL, from_handshake
from ems_dashboard_ws.hub import Hub
from ems_dashboard_ws.policy import AuthUnavailable
from ems_dashboard_ws.session import Session
from ems_dashboard_ws.state import get_state

logger = logging.getLogger(__name__)
router = APIRouter()

POLICY_VIOLATION = 1008
TRY_AGAIN_LATER = 1013


@router.websocket("/ws")
async def feed(websocket: WebSocket) -> None:
    await _serve(websocket, initial=None)


@router.websocket("/ws/dashboard/{device_id}")
async def dashboard(websocket: WebSocket, device_id: str) -> None:
    await _serve(websocket, initial=device_id)


def _peer(websocket: WebSocket) -> str:
    client = websocket.client
    return f"{client.host}:{client.port}" if client else "unknown"


def _selected_subprotocol(websocket: WebSocket) -> str | None:
    return PROTOCOL if PROTOCOL in websocket.scope.get("subprotocols", []) else None


async def _refuse(websocket: WebSocket, subprotocol: str | None, code: int, reason: str) -> None:
    # Accept first so the browser sees a close code and reason rather than a bare HTTP 403.
    await websocket.accept(subprotocol=subprotocol)
    await websocket.close(code=code, reason=reason)
    logger.info("refused WebSocket from %s: %s", _peer(websocket), reason)


async def _serve(websocket: WebSocket, *, initial: str | None) -> None:
    state = get_state(websocket)
    addr = websocket.client.host if websocket.client else None
    retry_after = state.limiter.blocked(addr)
    if retry_after > 0:
        # Refused before any token is looked at; the reason tells a human when to retry.
        log_refusal("websocket", addr, "rate limited", retry_after=retry_after)
        await _refuse(
            websocket,
            _selected_subprotocol(websocket),
            TRY_AGAIN_LATER,
            f"too many failed logins; retry in {max(1, math.ceil(retry_after))} s",
        )
        return
    creds = from_handshake(
        websocket.headers.get("authorization"), websocket.scope.get("subprotocols", [])
    )
    if creds.token is None:
        await _refuse(websocket, creds.subprotocol, POLICY_VIOLATION, creds.problem or "no token")
        return
    try:
        policy = await state.authenticator.authenticate(creds.token)
    except AuthUnavailable:
        logger.warning("token store unavailable; refusing WebSocket from %s", _peer(websocket))
        await _refuse(websocket, creds.subprotocol, TRY_AGAIN_LATER, "authentication unavailable")
        return
    if policy is None:
        state.limiter.failed(addr)
        log_refusal("websocket", addr, "invalid token")
        await _refuse(websocket, creds.subprotocol, POLICY_VIOLATION, "invalid token")
        return
    state.limiter.succeeded(addr)
    if initial is not None and not is_valid_device_id(initial):
        await _refuse(websocket, creds.subprotocol, POLICY_VIOLATION, "invalid device id")
        return

    await websocket.accept(subprotocol=creds.subprotocol)
    session = Session(
        policy, creds.token, queue_size=state.settings.ws_queue_size, peer=_peer(websocket)
    )
    state.hub.attach(session)
    logger.info("WebSocket session %d opened from %s", session.id, session.peer)
    try:
        if initial is not None:
            state.hub.subscribe(session, [device_filter(initial)])
        await _run(websocket, state.hub, session)
    finally:
        state.hub.detach(session)
        logger.info(
            "WebSocket session %d closed (%d messages dropped for lag)",
            session.id,
            session.dropped_total,
        )


async def _run(websocket: WebSocket, hub: Hub, session: Session) -> None:
    async with asyncio.TaskGroup() as tasks:
        sender = tasks.create_task(_send_loop(websocket, session), name=f"ws-{session.id}-send")
        closer = tasks.create_task(
            _close_when_asked(websocket, session, sender), name=f"ws-{session.id}-close"
        )
        try:
            await _receive_loop(websocket, hub, session)
        finally:
            sender.cancel()
            closer.cancel()


async def _send_loop(websocket: WebSocket, session: Session) -> None:
    try:
        while True:
            await websocket.send_text(await session.next_frame())
    except (WebSocketDisconnect, RuntimeError):
        # The peer went away or we already closed; the receive loop sees the disconnect.
        return


async def _close_when_asked(
    websocket: WebSocket, session: Session, sender: asyncio.Task[None]
) -> None:
    request = await session.close_request
    sender.cancel()
    logger.info("closing WebSocket session %d: %s", session.id, request.reason)
    try:
        await websocket.close(code=request.code, reason=request.reason)
    except (WebSocketDisconnect, RuntimeError):
        return


async def _receive_loop(websocket: WebSocket, hub: Hub, session: Session) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            session.send_control(frames.error("binary frames are not supported; send JSON text"))
            continue
        try:
            request = frames.parse_request(text)
        except frames.BadRequest as exc:
            session.send_control(frames.error(str(exc)))
            continue
        if isinstance(request, frames.SubscribeRequest):
            hub.subscribe(session, request.topics)
        elif isinstance(request, frames.UnsubscribeRequest):
            hub.unsubscribe(session, request.topics)
        else:
            session.send_control(frames.PONG)
