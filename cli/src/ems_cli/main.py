"""The ``ems`` command: one entry point for every part of EMS.

Every option also reads an ``EMS_*`` environment variable (see README's configuration table).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

import typer

from ems_cli.logs import setup_logging

app = typer.Typer(
    help="EMS: live energy monitoring over MQTT. `ems up` starts everything on one machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
device_app = typer.Typer(
    help="The Raspberry Pi agent, and the device registry.", no_args_is_help=True
)
token_app = typer.Typer(help="Access tokens (only their hashes are stored).", no_args_is_help=True)
app.add_typer(device_app, name="device")
app.add_typer(token_app, name="token")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        envvar="EMS_DATABASE_URL",
        help="PostgreSQL URL of the EMS database.",
        show_default=False,
    ),
]


def _database_url(value: str | None) -> str:
    if not value:
        raise typer.BadParameter(
            "set EMS_DATABASE_URL or pass --database-url", param_hint="--database-url"
        )
    return value


@app.command()
def up(
    devices: Annotated[
        int, typer.Option("--devices", "-n", min=0, max=500, help="Simulated devices to run.")
    ] = 3,
) -> None:
    """Start the whole system: database, broker, platform, dashboard and simulated devices.

    Uses an embedded PostgreSQL+TimescaleDB under EMS_DATA_DIR unless EMS_DATABASE_URL names a
    database. Prints the URLs when everything is ready; Ctrl-C or SIGTERM stops it all.
    """
    from ems_cli.settings import UpSettings
    from ems_cli.up import run_up

    setup_logging()
    raise typer.Exit(asyncio.run(run_up(UpSettings(), devices)))


@app.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Apply the database migrations that are not applied yet (safe to re-run)."""
    from ems_timescale.migrate import migrate as run_migrations

    setup_logging()
    applied = asyncio.run(run_migrations(_database_url(database_url)))
    typer.echo(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none needed'}")


@app.command()
def broker() -> None:
    """Run the built-in MQTT broker (amqtt with EMS token auth and ACLs).

    Configured by EMS_DATABASE_URL, EMS_MQTT_HOST, EMS_MQTT_PORT, EMS_MQTT_MAX_PACKET.
    """
    from ems_broker.server import serve
    from ems_broker.settings import BrokerSettings

    setup_logging()
    asyncio.run(serve(BrokerSettings()))


@app.command()
def platform() -> None:
    """Run the platform: MQTT ingest into TimescaleDB and the REST API.

    Configured by EMS_DATABASE_URL, EMS_MQTT_*, EMS_SERVICE_TOKEN, EMS_ADMIN_TOKEN, EMS_API_*.
    """
    from ems_platform.core.settings import PlatformSettings
    from ems_platform.serve import serve

    setup_logging()
    asyncio.run(serve(PlatformSettings()))


@app.command()
def dashboard() -> None:
    """Run the dashboard WebSocket adapter and the dashboard page.

    Configured by EMS_DATABASE_URL, EMS_MQTT_*, EMS_SERVICE_TOKEN, EMS_WS_HOST, EMS_WS_PORT.
    """
    from ems_dashboard_ws.server import serve
    from ems_dashboard_ws.settings import DashboardSettings

    setup_logging()
    asyncio.run(serve(DashboardSettings()))


@device_app.command("run")
def device_run() -> None:
    """Run the device agent (what a Raspberry Pi runs; simulated meter unless configured).

    Configured by EMS_DEVICE_ID, EMS_DEVICE_TOKEN, EMS_MQTT_HOST, EMS_MQTT_PORT,
    EMS_DEVICE_METER and the other EMS_DEVICE_* variables (see device/README.md).
    """
    from ems_device.cli import main as device_main

    raise typer.Exit(device_main(["run"]))


@device_app.command("add")
def device_add(
    device_id: Annotated[str, typer.Argument(help="Device id: [A-Za-z0-9_-]{1,64}.")],
    name: Annotated[str, typer.Option(help="Human-readable name.")] = "",
    timezone: Annotated[str, typer.Option(help="IANA time zone of the site.")] = "UTC",
    database_url: DatabaseUrl = None,
) -> None:
    """Register a device and print its new token (shown only this once)."""
    from ems_cli.admin import add_device_cmd

    setup_logging("WARNING")
    token = asyncio.run(add_device_cmd(_database_url(database_url), device_id, name, timezone))
    typer.echo(token)


@token_app.command("create")
def token_create(
    role: Annotated[
        str, typer.Option(help="device, viewer, operator, service or admin.")
    ] = "viewer",
    label: Annotated[str, typer.Option(help="What the token is for.")] = "",
    device_id: Annotated[
        str | None, typer.Option(help="The device a device token is bound to.")
    ] = None,
    expires_at: Annotated[
        datetime | None, typer.Option(help="Expiry (ISO 8601, with offset).")
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create a token with its role's default ACL and print it (shown only this once)."""
    from ems_cli.admin import create_token_cmd

    setup_logging("WARNING")
    token = asyncio.run(
        create_token_cmd(_database_url(database_url), role, label, device_id, expires_at)
    )
    typer.echo(token)
