"""Liveness, readiness and Prometheus metrics (no token: they reveal no device data)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ems_platform.api.deps import RuntimeDep
from ems_platform.core.db import ping

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
async def readyz(runtime: RuntimeDep) -> dict[str, Any] | JSONResponse:
    checks: dict[str, bool] = {"database": await ping(runtime.pool)}
    if runtime.ingest is not None:
        checks["mqtt"] = runtime.ingest.connected
        checks["ingest_store"] = runtime.ingest.store_healthy
    failing = [name for name, ok in checks.items() if not ok]
    if failing:
        return JSONResponse(
            {"detail": f"not ready: {', '.join(failing)}", "checks": checks},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    return {"status": "ready", "checks": checks}


@router.get("/metrics")
async def metrics(runtime: RuntimeDep) -> Response:
    return Response(generate_latest(runtime.registry), media_type=CONTENT_TYPE_LATEST)
