"""`ems up --devices 3` for real: every part started by the CLI, checked from the outside.

One stack serves the whole module (starting it is the expensive part); each test looks at it
through a different door: REST, the database, mosquitto_sub, the WebSocket, a device's own login.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import paho.mqtt.client as mqtt
import pytest
import websockets
from paho.mqtt.enums import CallbackAPIVersion

from ems_access.tokens import generate_token
from tests.e2e.stack import EmsUp, start_ems_up, wait_for

pytestmark = pytest.mark.e2e

DEVICES = ["sim-01", "sim-02", "sim-03"]


@dataclass
class Stack(EmsUp):
    database_url: str = ""

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/v1"

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.get(self.api + path, headers=headers, timeout=10)


@pytest.fixture(scope="module", params=["amqtt", "mosquitto"])
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    stack = start_ems_up(len(DEVICES), request.param, "ems-e2e-", Stack)
    try:
        wait_for(
            "the `EMS is up.` banner",
            lambda: "EMS is up." in stack.text() or stack.process.poll() is not None,
            timeout=120,
        )
        assert stack.process.poll() is None, "ems up exited early:\n" + stack.text()[-5000:]
        match = re.search(r"database\s+(postgresql://\S+)", stack.text())
        assert match, stack.text()
        stack.database_url = match.group(1)
        yield stack
    finally:
        stack.close()
    stack.output.append(f"exit code {stack.process.returncode}")


def _fresh_latest(stack: Stack, device_id: str) -> dict[str, Any] | None:
    response = stack.get(f"/devices/{device_id}/latest")
    if response.status_code != 200:
        return None
    body: dict[str, Any] = response.json()
    if not body.get("phases") or body.get("ts") is None:
        return None
    return body


def test_three_devices_listed_with_fresh_latest_values(stack: Stack) -> None:
    listed = wait_for(
        "three online devices",
        lambda: (
            devices
            if len(devices := stack.get("/devices").json()["devices"]) == 3
            and all(d["online"] for d in devices)
            else None
        ),
    )
    assert sorted(d["device_id"] for d in listed) == DEVICES
    for device_id in DEVICES:
        latest = wait_for(
            f"latest values of {device_id}", functools.partial(_fresh_latest, stack, device_id)
        )
        assert set(latest["phases"]) == {"A", "B", "C"}
        for phase in latest["phases"].values():
            assert 200 < phase["voltage_rms"] < 260
        assert latest["status"]["state"] == "online"


def test_api_refuses_missing_and_wrong_tokens(stack: Stack) -> None:
    assert httpx.get(stack.api + "/devices", timeout=10).status_code == 401
    assert stack.get("/devices", token=generate_token()).status_code == 401


def test_mosquitto_sub_with_the_admin_token_sees_telemetry_and_retained_status(
    stack: Stack,
) -> None:
    result = subprocess.run(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(stack.mqtt_port),
            "-u",
            "ops",
            "-P",
            stack.admin_token,
            "-t",
            "ems/#",
            "-v",
            "-C",
            "12",
            "-W",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    topics = {line.split(" ", 1)[0] for line in lines}
    assert {f"ems/{d}/status" for d in DEVICES} <= topics
    assert any(t.endswith("/telemetry") for t in topics)
    status = json.loads(
        next(line for line in lines if line.startswith("ems/sim-01/status ")).split(" ", 1)[1]
    )
    assert status["state"] == "online"


def test_mosquitto_sub_with_a_wrong_token_is_refused(stack: Stack) -> None:
    result = subprocess.run(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(stack.mqtt_port),
            "-u",
            "ops",
            "-P",
            generate_token(),
            "-t",
            "ems/#",
            "-C",
            "1",
            "-W",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0


def test_a_sample_travels_to_the_database_the_api_and_the_websocket(stack: Stack) -> None:
    """The WebSocket client and /latest see the same sample, and the database holds it."""

    async def watch() -> tuple[dict[Any, dict[str, Any]], dict[str, Any]]:
        url = f"ws://127.0.0.1:{stack.ws_port}/ws/dashboard/sim-02"
        seen: dict[Any, dict[str, Any]] = {}
        headers = {"Authorization": f"Bearer {stack.admin_token}"}
        async with (
            websockets.connect(url, additional_headers=headers) as ws,
            httpx.AsyncClient(base_url=stack.api, headers=headers, timeout=10) as api,
        ):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while loop.time() < deadline:
                frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
                if frame.get("type") != "message" or not frame["topic"].endswith("/telemetry"):
                    continue
                seen[_parse(frame["payload"]["ts"])] = frame["payload"]
                latest = (await api.get("/devices/sim-02/latest")).json()
                if latest.get("ts") and _parse(latest["ts"]) in seen:
                    return seen, latest
        raise AssertionError(f"/latest never returned one of the {len(seen)} samples seen")

    seen, latest = asyncio.run(watch())
    sample = seen[_parse(latest["ts"])]
    assert set(latest["phases"]) == set(sample["phases"])
    for phase, values in latest["phases"].items():
        for name in ("voltage_rms", "current_rms", "power_watt", "energy_kwh"):
            assert values[name] == sample["phases"][phase][name]

    async def stored() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(stack.database_url)
        try:
            return await conn.fetch(
                "SELECT phase, voltage_rms, energy_kwh FROM energy_readings "
                "WHERE device_id = 'sim-02' AND ts = $1 ORDER BY phase",
                _parse(latest["ts"]),
            )
        finally:
            await conn.close()

    rows = asyncio.run(stored())
    assert [r["phase"] for r in rows] == sorted(sample["phases"])
    for row in rows:
        assert row["voltage_rms"] == sample["phases"][row["phase"]]["voltage_rms"]
        assert row["energy_kwh"] == sample["phases"][row["phase"]]["energy_kwh"]


def test_malformed_payload_is_quarantined_and_the_device_stays_connected(stack: Stack) -> None:
    ems = shutil.which("ems") or str(Path(sys.executable).with_name("ems"))
    token = subprocess.run(
        [ems, "device", "add", "e2e-probe"],
        env=dict(os.environ, EMS_DATABASE_URL=stack.database_url),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    disconnects: list[Any] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-probe")
    client.username_pw_set("e2e-probe", token)
    client.on_disconnect = lambda *args: disconnects.append(args)
    client.connect("127.0.0.1", stack.mqtt_port)
    client.loop_start()
    try:
        wait_for("the probe to connect", client.is_connected, 15)
        client.publish(
            "ems/e2e-probe/telemetry", b'{"v": 1, "ts": "not a time"', qos=1
        ).wait_for_publish(15)
        good = {
            "v": 1,
            "ts": "2026-11-22T08:15:03.000Z",
            "seq": 1,
            "boot": "e2e",
            "phases": {
                "A": {
                    "voltage_rms": 231.5,
                    "current_rms": 1.0,
                    "power_watt": 230.0,
                    "power_var": 10.0,
                    "power_va": 231.5,
                    "power_factor": 0.99,
                    "voltage_thd": 1.0,
                    "current_thd": 2.0,
                    "energy_kwh": 12.5,
                }
            },
        }
        client.publish("ems/e2e-probe/telemetry", json.dumps(good), qos=1).wait_for_publish(15)

        async def look() -> tuple[list[asyncpg.Record], list[asyncpg.Record]]:
            conn = await asyncpg.connect(stack.database_url)
            try:
                readings = await conn.fetch(
                    "SELECT voltage_rms FROM energy_readings WHERE device_id = 'e2e-probe'"
                )
                events = await conn.fetch(
                    "SELECT verdict, reason FROM raw_events WHERE device_id = 'e2e-probe' "
                    "ORDER BY id"
                )
                return readings, events
            finally:
                await conn.close()

        readings, events = wait_for(
            "the probe's two messages in the audit log",
            lambda: (r if len(r[1]) >= 2 else None) if (r := asyncio.run(look())) else None,
        )
        assert [(e["verdict"], e["reason"]) for e in events] == [
            ("quarantined", "invalid_json"),
            ("accepted", None),
        ]
        assert [r["voltage_rms"] for r in readings] == [231.5]
        assert client.is_connected() and disconnects == []
    finally:
        client.loop_stop()
        client.disconnect()


def test_sigterm_stops_every_process_the_database_included(stack: Stack) -> None:
    # Runs last in this module (pytest keeps file order): stop the stack and look for leftovers.
    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=60) == 0, stack.text()[-3000:]
    leftovers = subprocess.run(
        ["pgrep", "-f", str(stack.data_dir)], capture_output=True, text=True, check=False
    ).stdout.split()
    assert leftovers == []
    for port in (stack.mqtt_port, stack.api_port, stack.ws_port):
        with pytest.raises(OSError):
            import socket

            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    stopped = [line for line in stack.output if "stopped " in line]
    assert any("sim-01" in line for line in stopped) and any("broker" in line for line in stopped)


def _parse(text: str) -> Any:
    from ems_contract import parse_timestamp

    return parse_timestamp(text)
