"""The adapter end to end: real PostgreSQL tokens, a real Mosquitto, real WebSockets."""

from __future__ import annotations

import asyncio
import json
import logging

import aiomqtt
import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ems_access import store
from ems_access.rules import AclRule
from ems_dashboard_ws.server import RunningServer
from tests.dashboard_ws.conftest import (
    Tokens,
    protocols,
    recv_json,
    recv_type,
    subscribe,
    wait_for_retained,
)
from tests.dashboard_ws.samples import status, telemetry


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_header_auth_receives_telemetry(
    adapter: RunningServer, tokens: Tokens, publisher: aiomqtt.Client
) -> None:
    async with connect(f"{adapter.ws_url}/ws", additional_headers=bearer(tokens.viewer)) as ws:
        assert await subscribe(ws, "ems/dev1/#") == {
            "type": "subscribed",
            "topics": ["ems/dev1/#"],
            "denied": [],
        }
        await publisher.publish("ems/dev1/telemetry", telemetry(7), qos=1)
        frame = await recv_json(ws)
    assert frame["type"] == "message"
    assert frame["topic"] == "ems/dev1/telemetry"
    assert frame["retained"] is False
    assert frame["payload"]["seq"] == 7
    assert frame["payload"]["phases"]["A"]["voltage_rms"] == 230.4


async def test_subprotocol_auth_selects_ems_v1(
    adapter: RunningServer, tokens: Tokens, publisher: aiomqtt.Client
) -> None:
    async with connect(f"{adapter.ws_url}/ws", subprotocols=protocols(tokens.viewer)) as ws:
        assert ws.subprotocol == "ems.v1"
        await subscribe(ws, "ems/+/telemetry")
        await publisher.publish("ems/dev9/telemetry", telemetry(1), qos=1)
        assert (await recv_json(ws))["topic"] == "ems/dev9/telemetry"


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"additional_headers": {"Authorization": "Bearer ems_notAToken0123456789"}}, "invalid"),
        ({"subprotocols": ["ems.v1", "ems.bearer.ems_notAToken0123456789"]}, "invalid"),
        ({}, "missing token"),
        ({"additional_headers": {"Authorization": "Basic dXNlcjpwYXNz"}}, "Bearer"),
    ],
)
async def test_bad_or_missing_token_is_closed_with_1008(
    adapter: RunningServer,
    kwargs: dict[str, object],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with connect(f"{adapter.ws_url}/ws", **kwargs) as ws:  # type: ignore[arg-type]
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert reason in closed.value.rcvd.reason
    # The server's own records (the test's websockets client logs what it sends).
    server_log = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("websockets.client")
    )
    assert "< GET /ws" in server_log  # the handshake was logged at DEBUG...
    assert "notAToken0123456789" not in server_log  # ...without the token
    assert "dXNlcjpwYXNz" not in server_log


async def test_revoked_token_is_refused_and_live_session_ended(
    adapter: RunningServer, tokens: Tokens, db_pool: asyncpg.Pool[asyncpg.Record]
) -> None:
    async with connect(f"{adapter.ws_url}/ws", additional_headers=bearer(tokens.viewer)) as ws:
        await subscribe(ws, "ems/#")
        assert await store.revoke_token(db_pool, tokens.viewer_id)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await recv_json(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert closed.value.rcvd.reason == "token revoked or expired"

    async with connect(f"{adapter.ws_url}/ws", additional_headers=bearer(tokens.viewer)) as ws:
        with pytest.raises(ConnectionClosed) as refused:
            await recv_json(ws)
    assert refused.value.rcvd is not None and refused.value.rcvd.code == 1008


async def test_scoped_viewer_sees_only_its_device(
    adapter: RunningServer, tokens: Tokens, publisher: aiomqtt.Client
) -> None:
    async with connect(f"{adapter.ws_url}/ws", additional_headers=bearer(tokens.dev1_viewer)) as ws:
        answer = await subscribe(ws, "ems/+/status", "ems/dev1/#", "ems/dev2/#", "other/#")
        assert answer["topics"] == ["ems/+/status", "ems/dev1/#"]
        assert answer["denied"] == ["ems/dev2/#", "other/#"]
        # Same publisher, same QoS: the broker and the adapter keep this order, so if dev2's
        # messages were delivered they would arrive before dev1's.
        await publisher.publish("ems/dev2/status", status(), qos=1)
        await publisher.publish("ems/dev2/telemetry", telemetry(1), qos=1)
        await publisher.publish("ems/dev1/telemetry", telemetry(2), qos=1)
        first = await recv_json(ws)
        assert first["topic"] == "ems/dev1/telemetry"
        await publisher.publish("ems/dev1/status", status(), qos=1)
        second = await recv_json(ws)
        assert second["topic"] == "ems/dev1/status"


async def test_retained_status_is_replayed_on_subscribe(
    adapter: RunningServer, tokens: Tokens, publisher: aiomqtt.Client
) -> None:
    await publisher.publish("ems/dev1/status", status("online"), qos=1, retain=True)
    await publisher.publish("ems/dev2/status", status("offline"), qos=1, retain=True)
    await wait_for_retained(adapter, 2)
    async with connect(f"{adapter.ws_url}/ws", additional_headers=bearer(tokens.viewer)) as ws:
        assert (await subscribe(ws, "ems/+/status"))["denied"] == []
        replay = [await recv_json(ws), await recv_json(ws)]
        assert [(f["topic"], f["retained"]) for f in replay] == [
            ("ems/dev1/status", True),
            ("ems/dev2/status", True),
        ]
        assert replay[1]["payload"]["state"] == "offline"

        # A live update is not a replay, and it becomes what the next subscriber is shown.
        await publisher.publish("ems/dev2/status", status("online"), qos=1, retain=True)
        live = await recv_json(ws)
        assert (live["topic"], live["retained"]) == ("ems/dev2/status", False)

    async with connect(f"{adapter.ws_url}/ws", additional_headers=bearer(tokens.dev1_viewer)) as ws:
        await subscribe(ws, "ems/+/status")
        only = await recv_json(ws)
        assert (only["topic"], only["retained"]) == ("ems/dev1/status", True)
        await ws.send(json.dumps({"type": "ping"}))
        # The pong proves no dev2 replay was queued behind the dev1 one.
        assert await recv_json(ws) == {"type": "pong"}

    async with connect(f"{adapter.ws_url}/ws", additional_headers=bearer(tokens.viewer)) as ws:
        await subscribe(ws, "ems/dev2/status")
        again = await recv_json(ws)
        assert again["retained"] is True
        assert again["payload"]["state"] == "online"


async def test_non_json_payload_is_flagged_and_fanout_survives(
    adapter: RunningServer, tokens: Tokens, publisher: aiomqtt.Client
) -> None:
    async with connect(f"{adapter.ws_url}/ws", additional_headers=bearer(tokens.viewer)) as ws:
        await subscribe(ws, "ems/dev1/#")
        await publisher.publish("ems/dev1/telemetry", b"volts=230", qos=1)
        await publisher.publish("ems/dev1/telemetry", b"\xff\xfe\x00", qos=1)
        await publisher.publish("ems/dev1/telemetry", telemetry(3), qos=1)
        text = await recv_json(ws)
        binary = await recv_json(ws)
        good = await recv_json(ws)
    assert text["payload"] == "volts=230"
    assert text["raw"] is True and text["encoding"] == "utf-8"
    assert binary["raw"] is True and binary["encoding"] == "base64"
    assert good["payload"]["seq"] == 3
    assert "raw" not in good


async def test_dashboard_shortcut_subscribes_the_device(
    adapter: RunningServer, tokens: Tokens, publisher: aiomqtt.Client
) -> None:
    await publisher.publish("ems/dev1/status", status(), qos=1, retain=True)
    await wait_for_retained(adapter, 1)
    async with connect(
        f"{adapter.ws_url}/ws/dashboard/dev1",
        subprotocols=protocols(tokens.dev1_viewer),
    ) as ws:
        assert await recv_json(ws) == {
            "type": "subscribed",
            "topics": ["ems/dev1/#"],
            "denied": [],
        }
        replay = await recv_json(ws)
        assert (replay["topic"], replay["retained"]) == ("ems/dev1/status", True)
        await publisher.publish("ems/dev2/telemetry", telemetry(1), qos=1)
        await publisher.publish("ems/dev1/telemetry", telemetry(2), qos=1)
        assert (await recv_json(ws))["topic"] == "ems/dev1/telemetry"

    async with connect(
        f"{adapter.ws_url}/ws/dashboard/dev2", additional_headers=bearer(tokens.dev1_viewer)
    ) as ws:
        assert await recv_json(ws) == {
            "type": "subscribed",
            "topics": [],
            "denied": ["ems/dev2/#"],
        }


async def test_dashboard_shortcut_rejects_wildcard_device_ids(
    adapter: RunningServer, tokens: Tokens
) -> None:
    async with connect(
        f"{adapter.ws_url}/ws/dashboard/%2B", additional_headers=bearer(tokens.viewer)
    ) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await recv_json(ws)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "invalid device id")


async def test_bad_client_frames_get_errors_and_the_connection_stays_up(
    adapter: RunningServer, tokens: Tokens, publisher: aiomqtt.Client
) -> None:
    async with connect(f"{adapter.ws_url}/ws", additional_headers=bearer(tokens.viewer)) as ws:
        for bad in ["not json", "[]", '{"type": "explode"}', '{"type": "subscribe"}']:
            await ws.send(bad)
            frame = await recv_json(ws)
            assert frame["type"] == "error", bad
            assert frame["detail"]
        await ws.send(b"\x00binary")
        assert "binary" in (await recv_json(ws))["detail"]
        answer = await subscribe(ws, "ems/#/bad", "ems/dev1/telemetry")
        assert answer["denied"] == ["ems/#/bad"]
        await publisher.publish("ems/dev1/telemetry", telemetry(5), qos=1)
        assert (await recv_json(ws))["payload"]["seq"] == 5


async def test_unsubscribe(
    adapter: RunningServer, tokens: Tokens, publisher: aiomqtt.Client
) -> None:
    async with connect(f"{adapter.ws_url}/ws", additional_headers=bearer(tokens.viewer)) as ws:
        await subscribe(ws, "ems/dev1/#", "ems/dev2/#")
        await ws.send(json.dumps({"type": "unsubscribe", "topics": ["ems/dev1/#", "x/#"]}))
        assert await recv_json(ws) == {"type": "unsubscribed", "topics": ["ems/dev1/#"]}
        await publisher.publish("ems/dev1/telemetry", telemetry(1), qos=1)
        await publisher.publish("ems/dev2/telemetry", telemetry(2), qos=1)
        assert (await recv_json(ws))["topic"] == "ems/dev2/telemetry"


async def test_healthz_and_page(adapter: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=adapter.http_url) as http:
        health = (await http.get("/healthz")).json()
        page = await http.get("/")
        script = await http.get("/static/app.js")
    assert health["status"] == "ok" and health["mqtt"] == "connected"
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script src="/static/app.js"' in page.text
    assert script.status_code == 200
    assert "ems.bearer." in script.text


async def test_acl_edit_applies_to_a_live_session(
    adapter: RunningServer,
    tokens: Tokens,
    publisher: aiomqtt.Client,
    db_pool: asyncpg.Pool[asyncpg.Record],
) -> None:
    async with connect(f"{adapter.ws_url}/ws", additional_headers=bearer(tokens.viewer)) as ws:
        await subscribe(ws, "ems/+/telemetry")
        await store.set_acl(db_pool, tokens.viewer_id, [AclRule("ems/dev1/#", "read")])
        # Bounded polling of a condition: publish dev2 then a dev1 marker until the marker
        # arrives with no dev2 message before it.
        for attempt in range(200):
            await publisher.publish("ems/dev2/telemetry", telemetry(attempt), qos=1)
            await publisher.publish("ems/dev1/telemetry", telemetry(attempt), qos=1)
            topics: list[str] = []
            while not topics or topics[-1] != "ems/dev1/telemetry":
                topics.append((await recv_type(ws, "message"))["topic"])
            if topics == ["ems/dev1/telemetry"]:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the narrowed ACL never took effect")
