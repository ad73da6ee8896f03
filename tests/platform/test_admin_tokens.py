"""``/api/v1/tokens``: token and ACL administration against a real database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI

from ems_access.store import authenticate
from ems_platform.admin.devices import add_device
from ems_platform.api.app import create_app
from ems_platform.core.settings import PlatformSettings

ADMIN_TOKEN = "ems_test_admin_" + "b" * 40
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[FastAPI]:
    settings = PlatformSettings(
        database_url=database_url, admin_token=ADMIN_TOKEN, ingest_enabled=False
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://platform") as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create(client: httpx.AsyncClient, **body: object) -> dict[str, object]:
    response = await client.post("/api/v1/tokens", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    data: dict[str, object] = response.json()
    return data


async def test_create_returns_token_once_and_list_never_shows_secrets(
    client: httpx.AsyncClient,
) -> None:
    created = await create(client, role="viewer", label="wall screen")
    secret = str(created["token"])
    assert secret.startswith("ems_")
    assert created["acl"] == [{"topic": "ems/#", "access": "read"}]
    assert set(created) >= {"id", "token", "role", "label", "device_id", "acl", "expires_at"}
    assert created["created_at"]

    listed = await client.get("/api/v1/tokens", headers=ADMIN)
    assert listed.status_code == 200
    assert secret not in listed.text
    assert "hash" not in listed.text
    ids = [t["id"] for t in listed.json()["tokens"]]
    assert created["id"] in ids

    shown = await client.get(f"/api/v1/tokens/{created['id']}", headers=ADMIN)
    assert shown.status_code == 200
    assert "token" not in shown.json()
    assert shown.json()["label"] == "wall screen"

    # the new token works at once
    devices = await client.get("/api/v1/devices", headers=bearer(secret))
    assert devices.status_code == 200


async def test_create_with_acl_and_expiry(client: httpx.AsyncClient) -> None:
    expires = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    created = await create(
        client,
        role="viewer",
        label="one device",
        acl=[{"topic": "ems/dev1/#", "access": "read"}, {"topic": "ems/#", "access": "deny"}],
        expires_at=expires.isoformat(),
    )
    assert created["acl"] == [
        {"topic": "ems/dev1/#", "access": "read"},
        {"topic": "ems/#", "access": "deny"},
    ]
    assert datetime.fromisoformat(str(created["expires_at"])) == expires


async def test_device_token_needs_registered_device(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    missing = await client.post(
        "/api/v1/tokens", json={"role": "device", "label": "x"}, headers=ADMIN
    )
    assert missing.status_code == 422
    assert "device_id" in missing.json()["detail"]
    unknown = await client.post(
        "/api/v1/tokens", json={"role": "device", "device_id": "ghost"}, headers=ADMIN
    )
    assert unknown.status_code == 422
    assert "ghost" in unknown.json()["detail"]
    await add_device(app.state.runtime.pool, "meter7")
    created = await create(client, role="device", label="spare", device_id="meter7")
    assert created["device_id"] == "meter7"
    assert created["acl"][0] == {"topic": "ems/%c/telemetry", "access": "write"}  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"role": "wizard"}, "role"),
        ({"role": "viewer", "expires_at": "2001-01-01T00:00:00Z"}, "past"),
        ({"role": "viewer", "expires_at": "2031-01-01T00:00:00"}, "offset"),
        ({"role": "viewer", "acl": [{"topic": "ems/#/x", "access": "read"}]}, "rule 1"),
        (
            {
                "role": "viewer",
                "acl": [
                    {"topic": "ems/a", "access": "read"},
                    {"topic": "ems/b", "access": "sometimes"},
                ],
            },
            "rule 2 (sometimes:ems/b)",
        ),
    ],
)
async def test_create_refuses_bad_requests(
    client: httpx.AsyncClient, body: dict[str, object], fragment: str
) -> None:
    response = await client.post("/api/v1/tokens", json=body, headers=ADMIN)
    assert response.status_code == 422
    assert fragment in str(response.json()["detail"])


async def test_put_acl_replaces_rules_and_applies_at_once(client: httpx.AsyncClient) -> None:
    created = await create(client, role="viewer", label="narrowed")
    token_id, secret = created["id"], str(created["token"])
    response = await client.put(
        f"/api/v1/tokens/{token_id}/acl",
        json={"acl": [{"topic": "ems/dev1/#", "access": "read"}]},
        headers=ADMIN,
    )
    assert response.status_code == 200
    assert response.json()["acl"] == [{"topic": "ems/dev1/#", "access": "read"}]
    got = await client.get(f"/api/v1/tokens/{token_id}/acl", headers=ADMIN)
    assert got.json() == [{"topic": "ems/dev1/#", "access": "read"}]
    # the API's own cache saw the NOTIFY: dev2 is no longer readable
    for _ in range(200):
        denied = await client.get("/api/v1/devices/dev2", headers=bearer(secret))
        if denied.status_code == 403:
            break
        await asyncio.sleep(0.01)
    assert denied.status_code == 403


async def test_put_acl_names_the_bad_rule(client: httpx.AsyncClient) -> None:
    created = await create(client, role="viewer", label="x")
    response = await client.put(
        f"/api/v1/tokens/{created['id']}/acl",
        json={
            "acl": [
                {"topic": "ems/ok/#", "access": "read"},
                {"topic": "ems/%x#", "access": "read"},
            ]
        },
        headers=ADMIN,
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("rule 2 (read:ems/%x#)")


async def test_rotate_gives_new_secret_and_old_stops_at_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    created = await create(client, role="operator", label="ops")
    old = str(created["token"])
    assert (await client.get("/api/v1/devices", headers=bearer(old))).status_code == 200
    rotated = await client.post(f"/api/v1/tokens/{created['id']}/rotate", headers=ADMIN)
    assert rotated.status_code == 200
    new = rotated.json()["token"]
    assert new != old and rotated.json()["id"] == created["id"]
    assert await authenticate(app.state.runtime.pool, old) is None
    assert (await client.get("/api/v1/devices", headers=bearer(old))).status_code == 401
    assert (await client.get("/api/v1/devices", headers=bearer(new))).status_code == 200


async def test_revoke_then_404_409(client: httpx.AsyncClient) -> None:
    created = await create(client, role="viewer", label="gone")
    token_id, secret = created["id"], str(created["token"])
    assert (await client.delete(f"/api/v1/tokens/{token_id}", headers=ADMIN)).status_code == 204
    assert (await client.get("/api/v1/devices", headers=bearer(secret))).status_code == 401
    again = await client.delete(f"/api/v1/tokens/{token_id}", headers=ADMIN)
    assert again.status_code == 409
    assert "revoked" in again.json()["detail"]
    rotate = await client.post(f"/api/v1/tokens/{token_id}/rotate", headers=ADMIN)
    assert rotate.status_code == 409
    acl = await client.put(f"/api/v1/tokens/{token_id}/acl", json={"acl": []}, headers=ADMIN)
    assert acl.status_code == 409
    shown = await client.get(f"/api/v1/tokens/{token_id}", headers=ADMIN)
    assert shown.status_code == 200 and shown.json()["revoked_at"]
    live = (await client.get("/api/v1/tokens", headers=ADMIN)).json()["tokens"]
    assert token_id not in [t["id"] for t in live]
    every = await client.get("/api/v1/tokens?include_revoked=true", headers=ADMIN)
    assert token_id in [t["id"] for t in every.json()["tokens"]]
    missing = UUID(int=1)
    for method, path in [
        ("GET", f"/api/v1/tokens/{missing}"),
        ("DELETE", f"/api/v1/tokens/{missing}"),
        ("POST", f"/api/v1/tokens/{missing}/rotate"),
    ]:
        response = await client.request(method, path, headers=ADMIN)
        assert response.status_code == 404
        assert str(missing) in response.json()["detail"]


async def test_only_admins_may_administer(client: httpx.AsyncClient) -> None:
    operator = str((await create(client, role="operator", label="op"))["token"])
    for method, path in [
        ("GET", "/api/v1/tokens"),
        ("POST", "/api/v1/tokens"),
        ("GET", f"/api/v1/tokens/{UUID(int=1)}"),
        ("DELETE", f"/api/v1/tokens/{UUID(int=1)}"),
    ]:
        response = await client.request(
            method, path, headers=bearer(operator), json={"role": "admin"}
        )
        assert response.status_code == 403, (method, path)
    assert (await client.get("/api/v1/tokens")).status_code == 401
