"""``python -m ems_dashboard_ws`` as an operator meets it."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from tests.dashboard_ws.conftest import WAIT_S, Tokens, protocols, subscribe
from tests.support.mosquitto import MosquittoBroker


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("EMS_")}
    return subprocess.run(
        [sys.executable, "-m", "ems_dashboard_ws", *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        check=False,
    )


def test_help_lists_the_settings() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for name in ("EMS_DATABASE_URL", "EMS_SERVICE_TOKEN", "EMS_WS_PORT", "EMS_MQTT_HOST"):
        assert name in result.stdout


def test_missing_settings_are_named_and_the_token_is_not_echoed() -> None:
    result = _run(env={"EMS_SERVICE_TOKEN": "ems_secretValueThatMustNotBeEchoed0123"})
    assert result.returncode == 2
    assert "EMS_DATABASE_URL" in result.stderr
    assert "secretValue" not in result.stderr + result.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_runs_as_a_process_and_stops_on_sigterm(
    database_url: str, tokens: Tokens, mosquitto_broker: MosquittoBroker, tmp_path: Path
) -> None:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("EMS_")},
        "EMS_DATABASE_URL": database_url,
        "EMS_SERVICE_TOKEN": tokens.service,
        "EMS_MQTT_HOST": mosquitto_broker.host,
        "EMS_MQTT_PORT": str(mosquitto_broker.port),
        "EMS_WS_PORT": str(port),
    }
    log = tmp_path / "adapter.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ems_dashboard_ws", "--log-level", "DEBUG"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            async with asyncio.timeout(WAIT_S):
                while True:
                    assert process.poll() is None, log.read_text()
                    try:
                        if (await http.get("/healthz")).json()["mqtt"] == "connected":
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
        async with connect(
            f"ws://127.0.0.1:{port}/ws", subprotocols=protocols(tokens.viewer)
        ) as ws:
            assert (await subscribe(ws, "ems/#"))["denied"] == []
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(process.wait, WAIT_S)
    assert returncode == 0, log.read_text()
    text = log.read_text()
    assert "Sec-WebSocket-Protocol" in text or "sec-websocket-protocol" in text
    assert tokens.viewer not in text
    assert tokens.service not in text
