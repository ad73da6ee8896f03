"""Failed authentications on the REST API are rate-limited per client address."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from ems_platform.api.app import create_app
from ems_platform.core.settings import PlatformSettings

ADMIN_TOKEN = "ems_test_admin_" + "c" * 40
LIMIT = 3


@pytest.fixture
async def app(database_url: str) -> AsyncIterator[FastAPI]:
    settings = PlatformSettings(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        ingest_enabled=False,
        auth_fail_limit=LIMIT,
        auth_fail_window=3600,
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def client_from(app: FastAPI, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://platform")


async def test_blocks_an_address_after_limit_failures(
    app: FastAPI, caplog: pytest.LogCaptureFixture
) -> None:
    guess = "ems_" + "x" * 43
    caplog.set_level(logging.DEBUG)
    async with client_from(app, "10.9.8.7") as attacker, client_from(app, "10.9.8.8") as other:
        for _ in range(LIMIT):
            response = await attacker.get(
                "/api/v1/devices", headers={"Authorization": f"Bearer {guess}"}
            )
            assert response.status_code == 401
        blocked = await attacker.get(
            "/api/v1/devices", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) >= 1
        assert "too many failed" in blocked.json()["detail"]
        # another address is unaffected
        ok = await other.get("/api/v1/devices", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert ok.status_code == 200
        # a request without a token is not a guess and is not counted
        for _ in range(LIMIT + 1):
            assert (await other.get("/api/v1/devices")).status_code == 401
        ok = await other.get("/api/v1/devices", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert ok.status_code == 200
    assert "door=rest addr=10.9.8.7 reason=rate limited" in caplog.text
    assert "door=rest addr=10.9.8.7 reason=invalid" in caplog.text
    assert guess not in caplog.text
    assert ADMIN_TOKEN not in caplog.text
