"""``/api/v1/tokens``: token and ACL administration (admin role only)."""

from __future__ import annotations

from datetime import datetime
from typing import NoReturn
from uuid import UUID

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, Field

from ems_access.rules import Role
from ems_platform.admin import token_admin
from ems_platform.admin.token_admin import (
    AclRuleView,
    TokenAdminError,
    TokenMissingError,
    TokenRevokedError,
    TokenView,
)
from ems_platform.api.deps import AdminDep, PoolDep

router = APIRouter(prefix="/tokens", tags=["tokens"])


class AclRuleIn(BaseModel):
    # Plain strings so a bad access value gets our message (which rule, what is allowed).
    topic: str = Field(description="MQTT filter; %c / %u as whole levels")
    access: str = Field(description="read, write, readwrite or deny")


class TokenCreate(BaseModel):
    role: Role
    label: str = ""
    device_id: str | None = None
    acl: list[AclRuleIn] | None = Field(
        default=None, description="ordered rules; omitted: the role's defaults"
    )
    expires_at: datetime | None = None


class TokenCreated(TokenView):
    token: str = Field(description="the secret; shown only this once")


class TokenList(BaseModel):
    tokens: list[TokenView]


class AclReplace(BaseModel):
    acl: list[AclRuleIn] = Field(description="the new ordered rules; first match wins")


def _pairs(rules: list[AclRuleIn]) -> list[tuple[str, str]]:
    return [(rule.topic, rule.access) for rule in rules]


def _http_error(exc: TokenAdminError) -> NoReturn:
    code = status.HTTP_422_UNPROCESSABLE_CONTENT
    if isinstance(exc, TokenMissingError):
        code = status.HTTP_404_NOT_FOUND
    elif isinstance(exc, TokenRevokedError):
        code = status.HTTP_409_CONFLICT
    raise HTTPException(code, detail=str(exc)) from exc


def _created(view: TokenView, secret: str) -> TokenCreated:
    return TokenCreated(**view.model_dump(), token=secret)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TokenCreated)
async def create_token(body: TokenCreate, pool: PoolDep, _: AdminDep) -> TokenCreated:
    try:
        view, secret = await token_admin.create_token(
            pool,
            role=body.role,
            label=body.label,
            device_id=body.device_id,
            acl=None if body.acl is None else _pairs(body.acl),
            expires_at=body.expires_at,
        )
    except TokenAdminError as exc:
        _http_error(exc)
    return _created(view, secret)


@router.get("", response_model=TokenList)
async def list_tokens(pool: PoolDep, _: AdminDep, include_revoked: bool = False) -> TokenList:
    return TokenList(tokens=await token_admin.list_tokens(pool, include_revoked=include_revoked))


@router.get("/{token_id}", response_model=TokenView)
async def show_token(token_id: UUID, pool: PoolDep, _: AdminDep) -> TokenView:
    try:
        return await token_admin.show_token(pool, token_id)
    except TokenAdminError as exc:
        _http_error(exc)


@router.get("/{token_id}/acl", response_model=list[AclRuleView])
async def show_acl(token_id: UUID, pool: PoolDep, _: AdminDep) -> list[AclRuleView]:
    try:
        return (await token_admin.show_token(pool, token_id)).acl
    except TokenAdminError as exc:
        _http_error(exc)


@router.put("/{token_id}/acl", response_model=TokenView)
async def replace_acl(token_id: UUID, body: AclReplace, pool: PoolDep, _: AdminDep) -> TokenView:
    try:
        return await token_admin.set_acl(pool, token_id, _pairs(body.acl))
    except TokenAdminError as exc:
        _http_error(exc)


@router.post("/{token_id}/rotate", response_model=TokenCreated)
async def rotate_token(token_id: UUID, pool: PoolDep, _: AdminDep) -> TokenCreated:
    try:
        view, secret = await token_admin.rotate_token(pool, token_id)
    except TokenAdminError as exc:
        _http_error(exc)
    return _created(view, secret)


@router.delete("/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_token(token_id: UUID, pool: PoolDep, _: AdminDep) -> Response:
    try:
        await token_admin.revoke_token(pool, token_id)
    except TokenAdminError as exc:
        _http_error(exc)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
