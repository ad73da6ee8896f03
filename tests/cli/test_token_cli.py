"""``ems token ...`` and ``ems acl ...`` against a real database (typer's CliRunner)."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import pytest
from typer.testing import CliRunner

from ems_access.store import authenticate
from ems_cli.main import app


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("EMS_DATABASE_URL", database_url)
    return CliRunner()


def run(cli: CliRunner, *args: str) -> tuple[int, str, str]:
    result = cli.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def works(database_url: str, token: str) -> bool:
    async def check() -> bool:
        conn = await asyncpg.connect(database_url)
        try:
            return await authenticate(conn, token) is not None
        finally:
            await conn.close()

    return asyncio.run(check())


def test_create_show_list_rotate_revoke(cli: CliRunner, database_url: str) -> None:
    code, out, err = run(cli, "token", "create", "--role", "operator", "--label", "night shift")
    assert code == 0, err
    token = out.strip()
    assert token.startswith("ems_") and "\n" not in token
    assert "shown only once" in err
    token_id = err.split("created token ")[1].split()[0]
    assert works(database_url, token)

    code, out, _ = run(cli, "token", "list")
    assert code == 0 and token_id in out and "night shift" in out and token not in out

    code, out, _ = run(cli, "token", "show", token_id[:8])
    assert code == 0
    assert f"id:         {token_id}" in out
    assert "1. read:ems/#" in out and "2. write:ems/+/cmd" in out
    assert token not in out

    code, out, _ = run(cli, "token", "show", token_id, "--json")
    shown = json.loads(out)
    assert shown["role"] == "operator" and "token" not in shown

    code, out, err = run(cli, "token", "rotate", token_id)
    assert code == 0, err
    new = out.strip()
    assert new != token and works(database_url, new) and not works(database_url, token)

    code, _, err = run(cli, "token", "revoke", token_id)
    assert code == 0 and f"revoked token {token_id}" in err
    assert not works(database_url, new)
    code, out, _ = run(cli, "token", "list")
    assert token_id not in out
    code, out, _ = run(cli, "token", "list", "--all")
    assert token_id in out and "revoked" in out
    code, _, err = run(cli, "token", "revoke", token_id)
    assert code == 1 and "already revoked" in err


def test_acl_set_and_show(cli: CliRunner) -> None:
    code, out, _ = run(cli, "token", "create", "--role", "viewer", "--json")
    assert code == 0
    created = json.loads(out)
    token_id = created["id"]
    assert created["token"].startswith("ems_")

    code, out, err = run(cli, "acl", "set", token_id, "read:ems/dev1/#", "deny:ems/#")
    assert code == 0, err
    assert out.splitlines() == ["  1. read:ems/dev1/#", "  2. deny:ems/#"]
    code, out, _ = run(cli, "acl", "show", token_id, "--json")
    assert json.loads(out) == [
        {"topic": "ems/dev1/#", "access": "read"},
        {"topic": "ems/#", "access": "deny"},
    ]
    code, out, _ = run(cli, "acl", "set", token_id, "--defaults")
    assert code == 0 and out.splitlines() == ["  1. read:ems/#"]


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (["read ems/#"], "ACCESS:TOPIC"),
        (["peek:ems/#"], "ACCESS:TOPIC"),
        (["read:ems/ok", "read:ems/#/bad"], "rule 2 (read:ems/#/bad)"),
    ],
)
def test_acl_set_refuses_bad_rules(cli: CliRunner, rules: list[str], message: str) -> None:
    code, out, _ = run(cli, "token", "create", "--json")
    token_id = json.loads(out)["id"]
    code, out, err = run(cli, "acl", "set", token_id, *rules)
    assert code != 0
    assert message in (out + err).replace("\n", " ").replace("│", "")
    code, out, _ = run(cli, "acl", "show", token_id)
    assert out.splitlines() == ["  1. read:ems/#"]  # unchanged


def test_create_with_acl_and_expiry_and_errors(cli: CliRunner) -> None:
    code, out, err = run(
        cli,
        "token",
        "create",
        "--role",
        "viewer",
        "--acl",
        "read:ems/a/#",
        "--acl",
        "deny:#",
        "--expires-at",
        "2099-01-01T00:00:00+00:00",
        "--json",
    )
    assert code == 0, err
    created = json.loads(out)
    assert created["acl"] == [
        {"topic": "ems/a/#", "access": "read"},
        {"topic": "#", "access": "deny"},
    ]
    assert created["expires_at"].startswith("2099-01-01")
    code, _, err = run(cli, "token", "create", "--role", "device", "--device-id", "ghost")
    assert code == 1 and "ghost" in err
    code, _, err = run(cli, "token", "show", "zz")
    assert code == 1 and "not a token id" in err
    code, _, err = run(cli, "token", "show", "00000000-0000-0000-0000-000000000001")
    assert code == 1 and "no token" in err


def test_help_documents_rule_syntax(cli: CliRunner) -> None:
    code, out, _ = run(cli, "acl", "set", "--help")
    assert code == 0
    assert "ACCESS:TOPIC" in out and "deny" in out
    for command in ("create", "list", "show", "rotate", "revoke"):
        code, out, _ = run(cli, "token", command, "--help")
        assert code == 0 and "EMS_DATABASE_URL" in out


def test_missing_database_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EMS_DATABASE_URL", raising=False)
    result = CliRunner().invoke(app, ["token", "list"])
    assert result.exit_code == 2
    assert "EMS_DATABASE_URL" in result.stdout + result.stderr
