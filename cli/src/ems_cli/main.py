"""The ``ems`` command: one entry point for every part of EMS.

Every option also reads an ``EMS_*`` environment variable (see README's configuration table).
"""

from __future__ import annotations

import asyncio
import os
from typing import Annotated, Any

import typer

from ems_cli.admin import acl_app, token_app
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
app.add_typer(device_app, name="device")
app.add_typer(token_app, name="token")
app.add_typer(acl_app, name="acl")

BROKERS = ("amqtt", "mosquitto")
#: Both pass the conformance suite; Mosquitto relays 3x faster at a fiftieth of the memory per
#: session (benchmarks/README.md), so it is what `ems up` and `ems broker` run unless told.
DEFAULT_BROKER = "mosquitto"

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
    broker: Annotated[
        str,
        typer.Option(
            "--broker",
            envvar="EMS_BROKER",
            help="MQTT broker to run: mosquitto (with the EMS plugin) or amqtt (built-in).",
        ),
    ] = DEFAULT_BROKER,
) -> None:
    """Start the whole system: database, broker, platform, dashboard and simulated devices.

    Uses an embedded PostgreSQL+TimescaleDB under EMS_DATA_DIR unless EMS_DATABASE_URL names a
    database. Prints the URLs when everything is ready; Ctrl-C or SIGTERM stops it all.
    """
    from ems_cli.settings import UpSettings
    from ems_cli.up import run_up

    if broker not in BROKERS:
        raise typer.BadParameter(f"choose one of {', '.join(BROKERS)}", param_hint="--broker")
    setup_logging()
    raise typer.Exit(asyncio.run(run_up(UpSettings(), devices, broker=broker)))


@app.command()
def migrate(database_url: DatabaseUrl = None) -> None:
    """Apply the database migrations that are not applied yet (safe to re-run)."""
    from ems_timescale.migrate import migrate as run_migrations

    setup_logging()
    applied = asyncio.run(run_migrations(_database_url(database_url)))
    typer.echo(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none needed'}")


# Service commands hand their arguments to the component's own command line, so
# `ems platform --help` and `python -m ems_platform --help` are one and the same.
_PASS_THROUGH: dict[str, Any] = {
    "context_settings": {"allow_extra_args": True, "ignore_unknown_options": True},
    "add_help_option": False,
}


@app.command(**_PASS_THROUGH)
def broker(ctx: typer.Context) -> None:
    """Run the MQTT broker: Mosquitto with the EMS plugin, or with --amqtt the built-in one.

    EMS_BROKER=amqtt|mosquitto also chooses (--mosquitto/--amqtt override it). Both enforce EMS
    tokens and per-token ACLs and apply token changes live. --help for the broker's options.
    """
    args = list(ctx.args)
    choice = os.environ.get("EMS_BROKER") or DEFAULT_BROKER
    for flag in ("--mosquitto", "--amqtt"):
        if flag in args:
            args.remove(flag)
            choice = flag[2:]
    if choice not in BROKERS:
        raise typer.BadParameter(f"EMS_BROKER must be one of {', '.join(BROKERS)}")
    if choice == "mosquitto":
        from ems_broker.mosquitto.__main__ import main as mosquitto_main

        raise typer.Exit(mosquitto_main(args))
    from ems_broker.__main__ import main as component_main

    raise typer.Exit(component_main(args))


@app.command(**_PASS_THROUGH)
def platform(ctx: typer.Context) -> None:
    """Run the platform: MQTT ingest into TimescaleDB and the REST API. --help for more."""
    from ems_platform.__main__ import main as component_main

    raise typer.Exit(component_main(ctx.args))


@app.command(**_PASS_THROUGH)
def dashboard(ctx: typer.Context) -> None:
    """Run the dashboard WebSocket adapter and the dashboard page. --help for more."""
    from ems_dashboard_ws.__main__ import main as component_main

    raise typer.Exit(component_main(ctx.args))


@device_app.command("run", **_PASS_THROUGH)
def device_run(ctx: typer.Context) -> None:
    """Run the device agent (what a Raspberry Pi runs; simulated meter unless configured).

    Configured by EMS_DEVICE_ID, EMS_DEVICE_TOKEN, EMS_MQTT_HOST, EMS_MQTT_PORT and the other
    EMS_DEVICE_* variables (device/README.md). --help for more.
    """
    from ems_device.cli import main as device_main

    raise typer.Exit(device_main(["run", *ctx.args]))


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
