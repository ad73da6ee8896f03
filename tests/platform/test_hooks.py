"""``/mqtt/auth`` and ``/mqtt/acl`` with the exact request shapes of EMQX 5 and go-auth."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI

from ems_access.rules import AclRule
from ems_access.store import create_token, revoke_token, rotate_token, set_acl
from ems_platform.admin.devices import add_device
from ems_platform.api.app import create_app
from ems_platform.core.settings import PlatformSettings

HOOK_SECRET = "hook_" + "s" * 40
LIMIT = 3


def settings_for(database_url: str, **extra: object) -> PlatformSettings:
    return PlatformSettings(
        database_url=database_url,
        ingest_enabled=False,
        hooks_enabled=True,
        auth_fail_limit=LIMIT,
        auth_fail_window=3600,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[FastAPI]:
    application = create_app(settings_for(database_url))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://platform") as c:
        yield c


def emqx_authn(
    clientid: str, username: str, password: str, peer: str = "192.0.2.10"
) -> dict[str, str]:
    # EMQX renders every placeholder as a string.
    return {"clientid": clientid, "username": username, "password": password, "peerhost": peer}


def emqx_authz(clientid: str, username: str, topic: str, action: str) -> dict[str, str]:
    return {
        "clientid": clientid,
        "username": username,
        "peerhost": "192.0.2.10",
        "topic": topic,
        "action": action,
        "qos": "1",
        "retain": "false",
    }


async def test_emqx_device_login_and_acl_list(app: FastAPI, client: httpx.AsyncClient) -> None:
    pool = app.state.runtime.pool
    _, token = await add_device(pool, "dev1")
    reply = await client.post("/mqtt/auth", json=emqx_authn("dev1", "dev1", token))
    assert reply.status_code == 200
    body = reply.json()
    assert body["result"] == "allow"
    assert body["is_superuser"] is False
    assert body["acl"] == [
        {"permission": "allow", "action": "publish", "topic": "ems/dev1/telemetry"},
        {"permission": "allow", "action": "publish", "topic": "ems/dev1/status"},
        {"permission": "allow", "action": "publish", "topic": "ems/dev1/cmd/ack"},
        {"permission": "allow", "action": "subscribe", "topic": "ems/dev1/cmd"},
        {"permission": "deny", "action": "all", "topic": "#"},
    ]
    # a device token must log in as its device
    wrong = await client.post("/mqtt/auth", json=emqx_authn("dev2", "dev2", token))
    assert wrong.json() == {"result": "deny"}
    bad = await client.post("/mqtt/auth", json=emqx_authn("dev1", "dev1", "ems_nope" + "0" * 40))
    assert bad.status_code == 200 and bad.json() == {"result": "deny"}


async def test_emqx_acl_list_omitted_when_a_deny_shadows_a_wider_read(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    pool = app.state.runtime.pool
    acl = [AclRule("ems/secret/#", "deny"), AclRule("ems/#", "read")]
    expires = datetime.now(UTC) + timedelta(hours=1)
    _, token = await create_token(pool, role="viewer", label="v", acl=acl, expires_at=expires)
    reply = (await client.post("/mqtt/auth", json=emqx_authn("c1", "ops", token))).json()
    assert reply["result"] == "allow"
    assert "acl" not in reply
    assert reply["expire_at"] == int(expires.timestamp())
    # so EMQX asks /mqtt/acl, which applies our exact semantics
    assert (
        await client.post("/mqtt/acl", json=emqx_authz("c1", "ops", "ems/#", "subscribe"))
    ).json() == {"result": "deny"}
    assert (
        await client.post("/mqtt/acl", json=emqx_authz("c1", "ops", "ems/d1/#", "subscribe"))
    ).json() == {"result": "allow"}
    assert (
        await client.post(
            "/mqtt/acl", json=emqx_authz("c1", "ops", "$share/g/ems/d1/#", "subscribe")
        )
    ).json() == {"result": "allow"}
    assert (
        await client.post("/mqtt/acl", json=emqx_authz("c1", "ops", "ems/d1/cmd", "publish"))
    ).json() == {"result": "deny"}


async def test_emqx_placeholders_resolved_and_unsafe_ids_dropped(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    pool = app.state.runtime.pool
    acl = [AclRule("ems/%u/#", "readwrite")]
    _, token = await create_token(pool, role="viewer", label="v", acl=acl)
    reply = (await client.post("/mqtt/auth", json=emqx_authn("c9", "alice", token))).json()
    assert reply["acl"][0] == {"permission": "allow", "action": "all", "topic": "ems/alice/#"}
    sneaky = (await client.post("/mqtt/auth", json=emqx_authn("c9", "#", token))).json()
    assert sneaky["acl"] == [{"permission": "deny", "action": "all", "topic": "#"}]


async def test_goauth_user_and_acl_checks(app: FastAPI, client: httpx.AsyncClient) -> None:
    pool = app.state.runtime.pool
    _, token = await add_device(pool, "dev1")
    user = {"username": "dev1", "password": token, "clientid": "dev1"}
    ok = await client.post("/mqtt/auth", json=user)
    assert ok.status_code == 200 and ok.json() == {"ok": True, "error": ""}

    async def acl(topic: str, acc: int, **params: str) -> httpx.Response:
        body = {"username": "dev1", "clientid": "dev1", "topic": topic, "acc": acc}
        return await client.post("/mqtt/acl", json=body, params=params)

    assert (await acl("ems/dev1/telemetry", 2)).status_code == 200
    assert (await acl("ems/dev1/cmd", 1)).status_code == 200
    assert (await acl("ems/dev1/cmd", 4)).status_code == 200
    assert (await acl("ems/dev1/cmd", 2)).status_code == 403
    assert (await acl("ems/dev2/telemetry", 2)).status_code == 403
    denied = await acl("ems/dev2/cmd", 1)
    assert denied.status_code == 403 and denied.json()["ok"] is False
    # text response mode
    text_ok = await acl("ems/dev1/cmd", 1, response="text")
    assert text_ok.status_code == 200 and text_ok.text == "ok"
    # form params mode
    form = await client.post(
        "/mqtt/acl",
        data={"username": "dev1", "clientid": "dev1", "topic": "ems/dev1/status", "acc": "2"},
    )
    assert form.status_code == 200
    # unknown client: no login seen
    stranger = await client.post(
        "/mqtt/acl", json={"username": "x", "clientid": "x", "topic": "ems/x", "acc": 1}
    )
    assert stranger.status_code == 403
    # superuser is never granted
    assert (await client.post("/mqtt/superuser", json={"username": "dev1"})).status_code == 403
    # bad password
    bad = await client.post("/mqtt/auth", json={**user, "password": "wrong"})
    assert bad.status_code == 403 and bad.json()["ok"] is False


async def test_acl_follows_rule_changes_rotation_and_revocation(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    pool = app.state.runtime.pool
    principal, token = await create_token(pool, role="viewer", label="v")
    assert (
        await client.post("/mqtt/auth", json={"username": "u", "password": token, "clientid": "c"})
    ).status_code == 200

    async def can_read(topic: str) -> int:
        body = {"username": "u", "clientid": "c", "topic": topic, "acc": 1}
        return (await client.post("/mqtt/acl", json=body)).status_code

    assert await can_read("ems/d1/telemetry") == 200
    await set_acl(pool, principal.token_id, [AclRule("ems/d2/#", "read")])
    await _until(lambda: can_read("ems/d1/telemetry"), 403)
    assert await can_read("ems/d2/telemetry") == 200
    await rotate_token(pool, principal.token_id)
    await _until(lambda: can_read("ems/d2/telemetry"), 403)

    other, token2 = await create_token(pool, role="viewer", label="w")
    await client.post("/mqtt/auth", json={"username": "u", "password": token2, "clientid": "c"})
    assert await can_read("ems/d2/telemetry") == 200
    await revoke_token(pool, other.token_id)
    await _until(lambda: can_read("ems/d2/telemetry"), 403)


async def _until(probe, expected: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(500):
        if await probe() == expected:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never got {expected}")


async def test_auth_is_rate_limited_per_client_address(
    app: FastAPI, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    _, token = await create_token(app.state.runtime.pool, role="viewer", label="v")
    guess = "ems_" + "g" * 43
    for _ in range(LIMIT):
        reply = await client.post(
            "/mqtt/auth", json=emqx_authn("c", "u", guess, peer="198.51.100.7")
        )
        assert reply.json() == {"result": "deny"}
    # even the right token is refused from that address now, and EMQX still sees a deny
    blocked = await client.post("/mqtt/auth", json=emqx_authn("c", "u", token, peer="198.51.100.7"))
    assert blocked.status_code == 200 and blocked.json() == {"result": "deny"}
    elsewhere = await client.post(
        "/mqtt/auth", json=emqx_authn("c", "u", token, peer="198.51.100.8")
    )
    assert elsewhere.json()["result"] == "allow"
    # go-auth has no client address: failures count per username, answered 429
    for _ in range(LIMIT):
        await client.post(
            "/mqtt/auth", json={"username": "bob", "password": guess, "clientid": "b"}
        )
    limited = await client.post(
        "/mqtt/auth", json={"username": "bob", "password": token, "clientid": "b"}
    )
    assert limited.status_code == 429 and "retry-after" in limited.headers
    assert "door=hook-emqx addr=198.51.100.7 reason=rate limited" in caplog.text
    assert guess not in caplog.text and token not in caplog.text


async def test_callers_outside_allowlist_or_without_secret_are_refused(
    database_url: str,
) -> None:
    application = create_app(settings_for(database_url, hook_secret=HOOK_SECRET))
    async with application.router.lifespan_context(application):
        _, token = await create_token(application.state.runtime.pool, role="viewer", label="v")
        body = emqx_authn("c", "u", token)
        far = httpx.ASGITransport(app=application, client=("203.0.113.5", 1))
        async with httpx.AsyncClient(transport=far, base_url="http://p") as outsider:
            refused = await outsider.post(
                "/mqtt/auth", json=body, headers={"X-EMS-Hook-Secret": HOOK_SECRET}
            )
            assert refused.status_code == 403
        near = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=near, base_url="http://p") as broker:
            assert (await broker.post("/mqtt/auth", json=body)).status_code == 403
            wrong = await broker.post(
                "/mqtt/auth", json=body, headers={"X-EMS-Hook-Secret": "x" * 45}
            )
            assert wrong.status_code == 403
            good = await broker.post(
                "/mqtt/auth", json=body, headers={"X-EMS-Hook-Secret": HOOK_SECRET}
            )
            assert good.json()["result"] == "allow"


async def test_hooks_absent_unless_enabled(database_url: str) -> None:
    application = create_app(PlatformSettings(database_url=database_url, ingest_enabled=False))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://p") as c:
            assert (await c.post("/mqtt/auth", json={})).status_code == 404


async def test_unreadable_body_is_400_without_echo(client: httpx.AsyncClient) -> None:
    reply = await client.post(
        "/mqtt/auth", content=b"password=ems_secret{", headers={"content-type": "text/plain"}
    )
    assert reply.status_code == 400
    assert "ems_secret" not in reply.text
