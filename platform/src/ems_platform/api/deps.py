"""Annotated dependencies: the runtime, the caller's principal, role and device checks."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Annotated, cast

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ems_access.ratelimit import log_refusal
from ems_access.rules import Principal, Role
from ems_contract import is_valid_device_id
from ems_contract.topics import DEVICE_ID_PATTERN
from ems_platform.api.runtime import Runtime
from ems_platform.core.db import Pool

_bearer = HTTPBearer(auto_error=False, description="an EMS token: `Authorization: Bearer ems_...`")


def get_runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_pool(runtime: RuntimeDep) -> Pool:
    return runtime.pool


PoolDep = Annotated[Pool, Depends(get_pool)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def client_address(request: Request) -> str:
    # The socket's peer: a proxy's X-Forwarded-For is not trusted, or anyone could pick the
    # address their failures are counted under.
    return request.client.host if request.client else "unknown"


def _too_many(retry_after: float) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        detail="too many failed authentications from this address; try again later",
        headers={"Retry-After": str(max(1, math.ceil(retry_after)))},
    )


async def get_principal(
    request: Request,
    runtime: RuntimeDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    addr = client_address(request)
    # Refused before the token is even looked at: a blocked address learns nothing.
    retry_after = runtime.limiter.blocked(addr)
    if retry_after > 0:
        log_refusal("rest", addr, "rate limited", retry_after=retry_after)
        raise _too_many(retry_after)
    if credentials is None:
        raise _unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    principal = await runtime.access.authenticate(credentials.credentials)
    if principal is None:
        runtime.limiter.failed(addr)
        log_refusal("rest", addr, "invalid, expired or revoked token")
        raise _unauthorized("invalid, expired or revoked token")
    runtime.limiter.succeeded(addr)
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_role(*roles: Role) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(principal: PrincipalDep) -> Principal:
        if principal.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"role {principal.role!r} may not do this; needs one of {list(roles)}",
            )
        return principal

    return check


OperatorDep = Annotated[Principal, Depends(require_role("admin", "operator"))]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]


def valid_device_id(device_id: str) -> str:
    if not is_valid_device_id(device_id):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"device id must match {DEVICE_ID_PATTERN}, got {device_id!r}",
        )
    return device_id


DeviceIdDep = Annotated[str, Depends(valid_device_id)]


async def readable_device_id(device_id: DeviceIdDep, principal: PrincipalDep) -> str:
    """The path's device id, if the caller's rules let it read that device's telemetry."""
    if not principal.can_read_device(device_id):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail=f"this token may not read device {device_id!r}"
        )
    return device_id


ReadableDeviceDep = Annotated[str, Depends(readable_device_id)]
