"""The REST API against a real database (ASGI transport; the ingest is not started)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from ems_access.rules import AclRule
from ems_access.store import create_token
from ems_platform.api.app import create_app
from ems_platform.core.settings import PlatformSettings
from tests.platform.payloads import BASE_TS

ADMIN_TOKEN = "ems_test_admin_" + "a" * 40


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def pool(self):  # type: ignore[no-untyped-def]
        return self.app.state.runtime.pool

    async def token(self, role: str, acl: list[AclRule] | None = None) -> dict[str, str]:
        _, plaintext = await create_token(self.pool, role=role, label=f"test {role}", acl=acl)  # type: ignore[arg-type]
        return auth(plaintext)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ADMIN = auth(ADMIN_TOKEN)


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    settings = PlatformSettings(
        database_url=database_url, admin_token=ADMIN_TOKEN, ingest_enabled=False
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://platform") as client:
            yield Api(app, client)


async def test_missing_or_invalid_token_is_401(api: Api) -> None:
    response = await api.client.get("/api/v1/devices")
    assert response.status_code == 401
    assert "bearer" in response.json()["detail"].lower()
    assert response.headers["www-authenticate"] == "Bearer"
    response = await api.client.get("/api/v1/devices", headers=auth("ems_" + "x" * 43))
    assert response.status_code == 401
    assert response.json()["detail"] == "invalid, expired or revoked token"
    response = await api.client.get("/api/v1/devices", headers={"Authorization": "Basic eDp5"})
    assert response.status_code == 401


async def test_viewer_may_not_create_or_delete(api: Api) -> None:
    viewer = await api.token("viewer")
    response = await api.client.post("/api/v1/devices", json={"device_id": "d1"}, headers=viewer)
    assert response.status_code == 403
    assert "viewer" in response.json()["detail"]
    await api.client.post("/api/v1/devices", json={"device_id": "d1"}, headers=ADMIN)
    assert (await api.client.delete("/api/v1/devices/d1", headers=viewer)).status_code == 403


async def test_create_returns_the_token_once_and_stores_only_its_hash(api: Api) -> None:
    body = {"device_id": "meter-1", "name": "Main", "timezone": "Europe/Berlin", "phases": ["A"]}
    response = await api.client.post("/api/v1/devices", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    created = response.json()
    token = created["token"]
    assert token.startswith("ems_") and len(token) >= 32
    assert created["device"]["device_id"] == "meter-1"
    assert created["device"]["timezone"] == "Europe/Berlin"
    assert created["device"]["phases"] == ["A"]
    assert created["device"]["online"] is False
    hashes = await api.pool.fetch("SELECT token_hash FROM tokens WHERE device_id = 'meter-1'")
    assert [r["token_hash"] for r in hashes] == [hashlib.sha256(token.encode()).hexdigest()]
    everything = await api.pool.fetchval("SELECT string_agg(t::text, ' ') FROM tokens t")
    assert token not in everything
    # Shown once: reading the device never shows it again.
    again = await api.client.get("/api/v1/devices/meter-1", headers=ADMIN)
    assert again.status_code == 200 and token not in again.text
    assert again.json()["name"] == "Main"


async def test_conflict_and_validation_messages(api: Api) -> None:
    assert (
        await api.client.post("/api/v1/devices", json={"device_id": "d1"}, headers=ADMIN)
    ).status_code == 201
    dup = await api.client.post("/api/v1/devices", json={"device_id": "d1"}, headers=ADMIN)
    assert dup.status_code == 409 and "already exists" in dup.json()["detail"]
    bad_id = await api.client.post("/api/v1/devices", json={"device_id": "a b"}, headers=ADMIN)
    assert bad_id.status_code == 422 and "device id must match" in bad_id.json()["detail"]
    bad_tz = await api.client.post(
        "/api/v1/devices", json={"device_id": "d2", "timezone": "Mars/Base"}, headers=ADMIN
    )
    assert bad_tz.status_code == 422 and "time zone" in bad_tz.json()["detail"]
    bad_path = await api.client.get("/api/v1/devices/bad.id", headers=ADMIN)
    assert bad_path.status_code == 422 and "device id must match" in bad_path.json()["detail"]
    missing = await api.client.get("/api/v1/devices/nope", headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["detail"] == "no device 'nope'"
    latest = await api.client.get("/api/v1/devices/nope/latest", headers=ADMIN)
    assert latest.status_code == 404


async def test_list_is_filtered_by_the_callers_rules(api: Api) -> None:
    for device_id in ("d1", "d2", "d3"):
        await api.client.post("/api/v1/devices", json={"device_id": device_id}, headers=ADMIN)
    everyone = await api.client.get("/api/v1/devices", headers=ADMIN)
    assert [d["device_id"] for d in everyone.json()["devices"]] == ["d1", "d2", "d3"]
    narrow = await api.token("viewer", acl=[AclRule("ems/d2/#", "read")])
    listed = await api.client.get("/api/v1/devices", headers=narrow)
    assert [d["device_id"] for d in listed.json()["devices"]] == ["d2"]
    assert (await api.client.get("/api/v1/devices/d1", headers=narrow)).status_code == 403
    assert (await api.client.get("/api/v1/devices/d1/latest", headers=narrow)).status_code == 403
    assert (await api.client.get("/api/v1/devices/d2", headers=narrow)).status_code == 200


async def test_latest_picks_the_newest_sample_per_phase_by_time_not_arrival(api: Api) -> None:
    await api.client.post("/api/v1/devices", json={"device_id": "d1"}, headers=ADMIN)
    insert = """
        INSERT INTO energy_readings (device_id, phase, ts, voltage_rms, current_rms, power_watt,
            power_var, power_va, power_factor, voltage_thd, current_thd, energy_kwh,
            energy_delta_kwh, flags, seq, boot, received_at)
        VALUES ('d1', $1, $2, $3, 1, 1, 1, 1, 1, 1, 1, $4, NULL, $5, $6, 'b', $7)
    """
    t0 = BASE_TS
    # Arrival order differs from time order: the late arrival is older and must not win.
    rows = [
        ("A", t0 + timedelta(seconds=10), 231.0, 11.0, [], 10, t0 + timedelta(seconds=11)),
        ("A", t0, 229.0, 10.0, ["out_of_order"], 0, t0 + timedelta(seconds=60)),
        ("B", t0 + timedelta(seconds=5), 228.0, 20.0, ["first_reading"], 5, t0),
    ]
    for row in rows:
        await api.pool.execute(insert, *row)
    response = await api.client.get("/api/v1/devices/d1/latest", headers=ADMIN)
    assert response.status_code == 200, response.text
    latest = response.json()
    assert latest["device_id"] == "d1"
    assert set(latest["phases"]) == {"A", "B"}
    assert latest["phases"]["A"]["voltage_rms"] == 231.0
    assert latest["phases"]["A"]["flags"] == []
    assert latest["phases"]["B"]["flags"] == ["first_reading"]
    assert latest["ts"] == "2026-11-22T08:15:13Z"
    assert set(latest) >= {"device_id", "ts", "phases", "status", "last_seen"}
    for name in (
        "voltage_rms",
        "current_rms",
        "power_watt",
        "power_var",
        "power_va",
        "power_factor",
        "voltage_thd",
        "current_thd",
        "energy_kwh",
    ):
        assert name in latest["phases"]["A"]


async def test_latest_of_a_device_without_readings(api: Api) -> None:
    await api.client.post("/api/v1/devices", json={"device_id": "d1"}, headers=ADMIN)
    latest = (await api.client.get("/api/v1/devices/d1/latest", headers=ADMIN)).json()
    assert latest == {
        "device_id": "d1",
        "ts": None,
        "phases": {},
        "status": None,
        "online": False,
        "last_seen": None,
    }


async def test_delete_device_revokes_its_token(api: Api) -> None:
    created = await api.client.post("/api/v1/devices", json={"device_id": "d1"}, headers=ADMIN)
    token = created.json()["token"]
    operator = await api.token("operator")
    assert (await api.client.delete("/api/v1/devices/d1", headers=operator)).status_code == 204
    assert (await api.client.delete("/api/v1/devices/d1", headers=operator)).status_code == 404
    assert (await api.client.get("/api/v1/devices", headers=auth(token))).status_code == 401
    assert await api.pool.fetchval("SELECT count(*) FROM tokens WHERE device_id = 'd1'") == 0


async def test_health_ready_and_metrics(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": True}
    metrics = await api.client.get("/metrics")
    assert metrics.status_code == 200
    assert "ems_ingest_samples_stored_total" in metrics.text


async def test_openapi_lists_the_routes(api: Api) -> None:
    paths = (await api.client.get("/openapi.json")).json()["paths"]
    assert {
        "/api/v1/devices",
        "/api/v1/devices/{device_id}",
        "/api/v1/devices/{device_id}/latest",
    } <= set(paths)
