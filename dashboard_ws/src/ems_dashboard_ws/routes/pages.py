"""The dashboard page and the liveness probe."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from ems_dashboard_ws.state import get_state

router = APIRouter()

STATIC_PACKAGE = ("ems_dashboard_ws", "static")


def _index_html() -> str:
    return files("ems_dashboard_ws").joinpath("static", "index.html").read_text("utf-8")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(_index_html(), headers={"Cache-Control": "no-cache"})


@router.get("/healthz")
async def healthz(request: Request) -> dict[str, Any]:
    state = get_state(request)
    return {
        "status": "ok",
        "mqtt": "connected" if state.link.connected.is_set() else "connecting",
        "clients": len(state.hub.sessions),
        "retained_topics": len(state.hub.retained_topics()),
    }
