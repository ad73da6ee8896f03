"""Admin commands that talk to the database directly: devices, tokens and their ACLs.

They work before the API runs (first set-up) and share ``ems_platform.admin`` with the REST
API, so a bad rule gets the same message from both. Secrets go to stdout only where a
command's purpose is to hand one out (create, rotate); everything else goes to stderr.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, TypeVar

import asyncpg
import typer

from ems_access import ROLES

if TYPE_CHECKING:
    from ems_platform.admin.token_admin import TokenView

T = TypeVar("T")

ACL_SYNTAX = (
    "Each RULE is ACCESS:TOPIC, ACCESS one of read, write, readwrite, deny; TOPIC an MQTT "
    "filter where %c (client id) and %u (username) may stand for whole levels. Rules are "
    "tried in order and the first that matches the topic and speaks about the action wins; "
    "no match denies. Quote rules in the shell: 'read:ems/dev1/#' 'deny:ems/#'."
)

token_app = typer.Typer(
    help="Access tokens: create, list, show, rotate, revoke (only hashes are stored).",
    no_args_is_help=True,
)
acl_app = typer.Typer(help="A token's ordered ACL rules. " + ACL_SYNTAX, no_args_is_help=True)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="EMS_DATABASE_URL",
        help="PostgreSQL URL of the EMS database.",
        show_default=False,
    ),
]
TokenId = Annotated[str, typer.Argument(help="Token id, or a unique prefix of it (4+ chars).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _dsn(value: str | None) -> str:
    if not value:
        raise typer.BadParameter(
            "set EMS_DATABASE_URL or pass --database-url", param_hint="--database-url"
        )
    return value


@asynccontextmanager
async def _pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    try:
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    except (OSError, asyncpg.PostgresError) as exc:
        # The DSN may carry a password: name the failure, not the URL.
        raise typer.BadParameter(
            f"cannot reach the database: {type(exc).__name__}", param_hint="--database-url"
        ) from exc
    try:
        yield pool
    finally:
        await pool.close()


def _run(dsn: str | None, action: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run one admin action against the database; admin errors become clean CLI errors."""
    from ems_platform.admin.token_admin import TokenAdminError
    from ems_platform.core.errors import PlatformError

    async def go() -> T:
        async with _pool(_dsn(dsn)) as pool:
            return await action(pool)

    try:
        return asyncio.run(go())
    except TokenAdminError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except PlatformError as exc:
        raise typer.BadParameter(str(exc)) from exc


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


def _describe(view: TokenView) -> str:
    lines = [
        f"id:         {view.id}",
        f"role:       {view.role}",
        f"label:      {view.label}",
        f"device:     {view.device_id or '-'}",
        f"created:    {_when(view.created_at)}",
        f"expires:    {_when(view.expires_at)}",
        f"revoked:    {_when(view.revoked_at)}",
        f"last used:  {_when(view.last_used_at)}",
        "acl:",
        *_rule_lines(view),
    ]
    return "\n".join(lines)


def _rule_lines(view: TokenView) -> list[str]:
    if not view.acl:
        return ["  (no rules: everything is denied)"]
    return [f"  {n}. {rule.access}:{rule.topic}" for n, rule in enumerate(view.acl, start=1)]


def _dump(data: object) -> str:
    return json.dumps(data, indent=2, default=str)


async def add_device_cmd(dsn: str, device_id: str, name: str, timezone: str) -> str:
    from ems_platform.admin.devices import add_device
    from ems_platform.core.errors import PlatformError

    async with _pool(dsn) as pool:
        try:
            _, token = await add_device(pool, device_id, name=name, timezone=timezone)
        except PlatformError as exc:
            raise typer.BadParameter(str(exc)) from exc
    return token


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(ROLES)}.")] = "viewer",
    label: Annotated[str, typer.Option(help="What the token is for.")] = "",
    device_id: Annotated[
        str | None, typer.Option(help="The device a device token is bound to.")
    ] = None,
    expires_at: Annotated[
        datetime | None,
        typer.Option(
            help="Expiry, ISO 8601 with an offset (2030-01-01T00:00:00+00:00).",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%dT%H:%M%z"],
        ),
    ] = None,
    acl: Annotated[
        list[str] | None,
        typer.Option("--acl", help="A rule ACCESS:TOPIC; repeat in order. Default: role's."),
    ] = None,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a token and print it (shown only this once) on stdout; details go to stderr."""
    from ems_platform.admin import token_admin

    rules = _rule_pairs(acl) if acl else None

    async def action(pool: asyncpg.Pool) -> tuple[TokenView, str]:
        return await token_admin.create_token(
            pool, role=role, label=label, device_id=device_id, acl=rules, expires_at=expires_at
        )

    view, secret = _run(database_url, action)
    if as_json:
        typer.echo(_dump({**view.model_dump(mode="json"), "token": secret}))
        return
    typer.echo(secret)
    typer.echo(f"created token {view.id} ({view.role}); the token is shown only once", err=True)


@token_app.command("list")
def token_list(
    include_revoked: Annotated[
        bool, typer.Option("--all", "-a", help="Include revoked tokens.")
    ] = False,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
) -> None:
    """List tokens (never their secrets): id, role, label, device, expiry, state."""
    from ems_platform.admin import token_admin

    async def action(pool: asyncpg.Pool) -> list[TokenView]:
        return await token_admin.list_tokens(pool, include_revoked=include_revoked)

    views = _run(database_url, action)
    if as_json:
        typer.echo(_dump([view.model_dump(mode="json") for view in views]))
        return
    typer.echo(f"{'ID':36}  {'ROLE':8}  {'DEVICE':16}  {'EXPIRES':25}  {'STATE':7}  LABEL")
    for view in views:
        state = "revoked" if view.revoked_at else "live"
        typer.echo(
            f"{view.id!s:36}  {view.role:8}  {view.device_id or '-':16}  "
            f"{_when(view.expires_at):25}  {state:7}  {view.label}"
        )


@token_app.command("show")
def token_show(
    token_id: TokenId, as_json: JsonFlag = False, database_url: DatabaseUrl = None
) -> None:
    """Show one token: role, binding, dates and its ordered ACL (never the secret)."""
    from ems_platform.admin import token_admin

    async def action(pool: asyncpg.Pool) -> TokenView:
        return await token_admin.show_token(
            pool, await token_admin.resolve_token_id(pool, token_id)
        )

    view = _run(database_url, action)
    typer.echo(_dump(view.model_dump(mode="json")) if as_json else _describe(view))


@token_app.command("rotate")
def token_rotate(
    token_id: TokenId, as_json: JsonFlag = False, database_url: DatabaseUrl = None
) -> None:
    """Give a token a new secret and print it; the old secret stops working at once."""
    from ems_platform.admin import token_admin

    async def action(pool: asyncpg.Pool) -> tuple[TokenView, str]:
        return await token_admin.rotate_token(
            pool, await token_admin.resolve_token_id(pool, token_id)
        )

    view, secret = _run(database_url, action)
    if as_json:
        typer.echo(_dump({**view.model_dump(mode="json"), "token": secret}))
        return
    typer.echo(secret)
    typer.echo(f"rotated token {view.id}; the old secret no longer works", err=True)


@token_app.command("revoke")
def token_revoke(token_id: TokenId, database_url: DatabaseUrl = None) -> None:
    """Revoke a token: it stops working and its live MQTT/WebSocket sessions are closed."""
    from ems_platform.admin import token_admin

    async def action(pool: asyncpg.Pool) -> TokenView:
        return await token_admin.revoke_token(
            pool, await token_admin.resolve_token_id(pool, token_id)
        )

    view = _run(database_url, action)
    typer.echo(f"revoked token {view.id}", err=True)


def _rule_pairs(specs: list[str]) -> list[tuple[str, str]]:
    from ems_platform.admin.token_admin import InvalidAclError, parse_rule_spec

    try:
        return [parse_rule_spec(spec) for spec in specs]
    except InvalidAclError as exc:
        raise typer.BadParameter(str(exc)) from exc


@acl_app.command("set", help="Replace a token's ordered rules. " + ACL_SYNTAX)
def acl_set(
    token_id: TokenId,
    rules: Annotated[
        list[str] | None, typer.Argument(help="Rules in order, each ACCESS:TOPIC.")
    ] = None,
    defaults: Annotated[
        bool, typer.Option("--defaults", help="Reset to the role's default rules instead.")
    ] = False,
    as_json: JsonFlag = False,
    database_url: DatabaseUrl = None,
) -> None:
    from ems_platform.admin import token_admin

    if defaults and rules:
        raise typer.BadParameter("give rules or --defaults, not both")
    if not defaults and not rules:
        raise typer.BadParameter(
            "give at least one rule (e.g. 'deny:#' to deny everything) or --defaults"
        )
    pairs = _rule_pairs(rules or [])

    async def action(pool: asyncpg.Pool) -> TokenView:
        resolved = await token_admin.resolve_token_id(pool, token_id)
        if defaults:
            return await token_admin.reset_acl(pool, resolved)
        return await token_admin.set_acl(pool, resolved, pairs)

    view = _run(database_url, action)
    if as_json:
        typer.echo(_dump([rule.model_dump() for rule in view.acl]))
    else:
        typer.echo("\n".join(_rule_lines(view)))


@acl_app.command("show")
def acl_show(
    token_id: TokenId, as_json: JsonFlag = False, database_url: DatabaseUrl = None
) -> None:
    """Print a token's rules in order, as ACCESS:TOPIC (first match wins)."""
    from ems_platform.admin import token_admin

    async def action(pool: asyncpg.Pool) -> TokenView:
        return await token_admin.show_token(
            pool, await token_admin.resolve_token_id(pool, token_id)
        )

    view = _run(database_url, action)
    if as_json:
        typer.echo(_dump([rule.model_dump() for rule in view.acl]))
    else:
        typer.echo("\n".join(_rule_lines(view)))
