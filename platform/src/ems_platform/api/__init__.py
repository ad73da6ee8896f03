"""The REST API (FastAPI) under /api/v1, plus health, readiness and metrics."""

from ems_platform.api.app import create_app

__all__ = ["create_app"]
