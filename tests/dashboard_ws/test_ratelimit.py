"""Failed WebSocket logins are rate-limited per client address (real adapter, real DB)."""

from __future__ import annotations

import logging

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ems_dashboard_ws.server import RunningServer
from tests.dashboard_ws.conftest import AdapterFactory, Tokens, protocols, recv_json, subscribe
from tests.support.mosquitto import MosquittoBroker

LIMIT = 2


async def close_code(server: RunningServer, token: str) -> tuple[int, str]:
    async with connect(f"{server.ws_url}/ws", subprotocols=protocols(token)) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code, closed.value.rcvd.reason


async def test_blocked_after_limit_failures_even_with_a_good_token(
    adapter_factory: AdapterFactory,
    mosquitto_broker: MosquittoBroker,
    tokens: Tokens,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    guess = "ems_" + "w" * 43
    async with adapter_factory(
        mosquitto_broker, auth_fail_limit=LIMIT, auth_fail_window=3600
    ) as server:
        async with connect(f"{server.ws_url}/ws", subprotocols=protocols(tokens.viewer)) as ws:
            assert (await subscribe(ws, "ems/#"))["type"] == "subscribed"
        for _ in range(LIMIT):
            assert (await close_code(server, guess))[0] == 1008
        code, reason = await close_code(server, tokens.viewer)
        assert code == 1013
        assert "too many failed logins" in reason
    assert "door=websocket addr=127.0.0.1 reason=rate limited" in caplog.text
    server_log = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("websockets.client")
    )
    assert guess not in server_log and tokens.viewer not in server_log
