"""``ems up``: the whole system on one machine, started in order and stopped in reverse."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from ems_access.store import authenticate, create_token, ensure_token
from ems_cli.secrets import load_or_create, read_secret, write_secret
from ems_cli.settings import UpSettings
from ems_cli.supervisor import Child, ChildFailed, Supervisor, http_ready, tcp_ready
from ems_platform.admin.devices import add_device, get_device
from ems_timescale.cluster import LocalCluster
from ems_timescale.migrate import migrate

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def simulated_device_ids(count: int) -> list[str]:
    return [f"sim-{i:02d}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class DeviceLogin:
    device_id: str
    token: str


async def _prepare_devices(pool: asyncpg.Pool, data_dir: Path, count: int) -> list[DeviceLogin]:
    """Register the simulated devices once; reuse their tokens across restarts."""
    logins = []
    for index, device_id in enumerate(simulated_device_ids(count), start=1):
        token_file = data_dir / "devices" / f"{device_id}.token"
        token = read_secret(token_file)
        if await get_device(pool, device_id) is None:
            _, token = await add_device(pool, device_id, name=f"Simulated meter {index}")
            write_secret(token_file, token)
        elif token is None or await authenticate(pool, token) is None:
            _, token = await create_token(
                pool, role="device", label=f"{device_id} (ems up)", device_id=device_id
            )
            write_secret(token_file, token)
        logins.append(DeviceLogin(device_id, token))
    return logins


def _child(name: str, args: list[str], env: Mapping[str, str], **kw: object) -> Child:
    return Child(name, [sys.executable, "-m", "ems_cli", *args], env, **kw)  # type: ignore[arg-type]


def _banner(settings: UpSettings, dsn_shown: str, devices: list[DeviceLogin], broker: str) -> str:
    h = settings.host
    lines = [
        "",
        "EMS is up.",
        f"  database   {dsn_shown}",
        f"  MQTT       mqtt://{h}:{settings.mqtt_port}   ({broker})",
        f"  REST API   http://{h}:{settings.api_port}/api/v1   (docs: /docs)",
        f"  dashboard  http://{h}:{settings.ws_port}/",
        f"  devices    {', '.join(d.device_id for d in devices) or 'none'}",
        f"  state      {settings.data_dir}",
        "",
        f'  Watch:  mosquitto_sub -h {h} -p {settings.mqtt_port} -u ops -P "$EMS_ADMIN_TOKEN"'
        " -t 'ems/#' -v",
        "" if settings.admin_token else "  (set EMS_ADMIN_TOKEN to install an admin token)",
        "Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(lines)


def _broker_args(broker: str) -> list[str]:
    # amqtt stays the default until the conformance suite's results decide otherwise.
    return ["broker", "--mosquitto"] if broker == "mosquitto" else ["broker", "--amqtt"]


async def run_up(settings: UpSettings, device_count: int, *, broker: str) -> int:
    data_dir = settings.data_dir
    # 0711: the embedded PostgreSQL runs as `postgres` when we are root and must traverse this
    # directory; secrets below it stay in 0700 directories and 0600 files.
    data_dir.mkdir(parents=True, exist_ok=True)
    data_dir.chmod(0o711)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    supervisor = Supervisor()
    async with AsyncExitStack() as stack:
        if settings.database_url is not None:
            dsn = settings.database_url.get_secret_value()
            shown = "EMS_DATABASE_URL"
        else:
            cluster = LocalCluster(
                data_dir / "postgres", port=settings.db_port or free_port(), durable=True
            )
            log.info("starting the embedded PostgreSQL+TimescaleDB in %s", cluster.data_dir)
            await stack.enter_async_context(cluster)
            await cluster.ensure_database("ems")
            dsn = shown = cluster.dsn("ems")
        applied = await migrate(dsn)
        log.info("database schema: %d migration(s) applied now", len(applied))

        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        try:
            service_token = load_or_create(data_dir / "secrets" / "service.token")
            await ensure_token(pool, service_token, role="service", label="ems up services")
            if settings.admin_token is not None:
                await ensure_token(
                    pool,
                    settings.admin_token.get_secret_value(),
                    role="admin",
                    label="EMS_ADMIN_TOKEN",
                )
            devices = await _prepare_devices(pool, data_dir, device_count)
        finally:
            await pool.close()

        env = dict(os.environ)
        env.update(
            EMS_DATABASE_URL=dsn,
            EMS_SERVICE_TOKEN=service_token,
            EMS_MQTT_HOST=settings.host,
            EMS_MQTT_PORT=str(settings.mqtt_port),
            EMS_API_HOST=settings.host,
            EMS_API_PORT=str(settings.api_port),
            EMS_WS_HOST=settings.host,
            EMS_WS_PORT=str(settings.ws_port),
            EMS_BROKER=broker,
            # Mosquitto's config, access snapshot and persistence live with the other state.
            EMS_MOSQUITTO_DIR=str(data_dir / "mosquitto"),
            PYTHONUNBUFFERED="1",
        )
        # The platform installs EMS_ADMIN_TOKEN itself; nothing else needs to see it.
        env.pop("EMS_ADMIN_TOKEN", None)
        stack.push_async_callback(supervisor.stop_all)
        h = settings.host
        try:
            # The platform and the dashboard reconnect to the broker by themselves, so the
            # three start together; devices follow once all three are ready.
            await supervisor.start(
                _child(
                    "broker",
                    _broker_args(broker),
                    env,
                    ready=lambda: tcp_ready(h, settings.mqtt_port),
                ),
                _child(
                    "platform",
                    ["platform"],
                    env,
                    ready=lambda: http_ready(h, settings.api_port, "/readyz"),
                ),
                _child(
                    "dashboard",
                    ["dashboard"],
                    env,
                    ready=lambda: http_ready(h, settings.ws_port, "/healthz"),
                ),
            )
            device_children = []
            for login in devices:
                device_env = dict(
                    env,
                    EMS_DEVICE_ID=login.device_id,
                    EMS_DEVICE_TOKEN=login.token,
                    EMS_DEVICE_DB=str(data_dir / "devices" / f"{login.device_id}.db"),
                )
                device_env.pop("EMS_DATABASE_URL")
                device_env.pop("EMS_SERVICE_TOKEN")
                device_children.append(_child(login.device_id, ["device", "run"], device_env))
            await supervisor.start(*device_children)
        except ChildFailed as exc:
            log.error("%s; stopping everything", exc)
            return 1
        sys.stdout.write(_banner(settings, shown, devices, broker))
        sys.stdout.flush()

        stopper = asyncio.create_task(stop.wait(), name="wait-signal")
        exited = asyncio.create_task(supervisor.wait_any_exit(), name="wait-child")
        done, _ = await asyncio.wait({stopper, exited}, return_when=asyncio.FIRST_COMPLETED)
        for task in (stopper, exited):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if exited in done and not exited.cancelled():
            child = exited.result()
            code = child.process.returncode if child.process else None
            log.error("%s exited unexpectedly (code %s); stopping everything", child.name, code)
            return 1
        log.info("stopping (signal received)")
    return 0
