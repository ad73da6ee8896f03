"""A full `ems up --devices 2` at DEBUG never prints a token, nor puts one in a URL.

Every door is exercised with good and bad tokens (MQTT with the real mosquitto_sub, REST,
the WebSocket's subprotocol token, a rotation), then the stack is stopped and everything it
printed (and any log file it wrote) is searched for every secret involved.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess

import httpx
import pytest
import websockets

from ems_access.tokens import generate_token
from tests.e2e.stack import EmsUp, start_ems_up, wait_for

pytestmark = pytest.mark.e2e

DEVICES = ["sim-01", "sim-02"]
URL = re.compile(r"\b(?:https?|wss?|mqtts?|postgres(?:ql)?)://\S+")


def mosquitto_sub(port: int, token: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-u",
            "ops",
            "-P",
            token,
            "-t",
            "ems/#",
            "-C",
            "1",
            "-W",
            "20",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def ws_first_frame(port: int, token: str) -> str:
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws",
        subprotocols=["ems.v1", f"ems.bearer.{token}"],  # type: ignore[list-item]
    ) as ws:
        await ws.send(json.dumps({"type": "subscribe", "topics": ["ems/#"]}))
        return str(await asyncio.wait_for(ws.recv(), 30))


async def ws_refused(port: int, token: str) -> int | None:
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws",
        subprotocols=["ems.v1", f"ems.bearer.{token}"],  # type: ignore[list-item]
    ) as ws:
        try:
            await asyncio.wait_for(ws.recv(), 30)
        except websockets.ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None
    return None


def leaks(text: str, secret: str) -> bool:
    # The whole token, or a long-enough piece of its random part (a truncated leak is a leak).
    body = secret.removeprefix("ems_")
    return secret in text or body[:16] in text or body[-16:] in text


@pytest.mark.parametrize("broker", ["mosquitto", "amqtt"])
def test_no_token_in_any_output_or_url(broker: str) -> None:
    up = start_ems_up(len(DEVICES), broker, "ems-e2e-secrets-", EmsUp)
    admin, data_dir, process, output = up.admin_token, up.data_dir, up.process, up.output
    ports = {"mqtt": up.mqtt_port, "api": up.api_port, "ws": up.ws_port}
    api = f"http://127.0.0.1:{ports['api']}/api/v1"
    secrets: dict[str, str] = {"admin": admin}
    bad = {f"bad-{n}": generate_token() for n in range(3)}
    bad["bad-short"] = "hunter2-not-a-token-but-secret"
    try:
        wait_for(
            "`EMS is up.`",
            lambda: "EMS is up." in "\n".join(output) or process.poll() is not None,
            timeout=120,
        )
        assert process.poll() is None, "\n".join(output[-200:])
        admin_h = {"Authorization": f"Bearer {admin}"}

        # REST: good, bad, create, rotate
        assert httpx.get(f"{api}/devices", headers=admin_h, timeout=10).status_code == 200
        for token in bad.values():
            r = httpx.get(
                f"{api}/devices", headers={"Authorization": f"Bearer {token}"}, timeout=10
            )
            assert r.status_code == 401
        created = httpx.post(
            f"{api}/tokens",
            json={"role": "viewer", "label": "log scan"},
            headers=admin_h,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        viewer, viewer_id = created.json()["token"], created.json()["id"]
        secrets["viewer-before-rotate"] = viewer
        # MQTT with the real client: good login (receives a message), bad login refused
        # A new token reaches Mosquitto's access snapshot asynchronously: poll, bounded.
        login = wait_for(
            "the new viewer token to work over MQTT",
            lambda: sub if (sub := mosquitto_sub(ports["mqtt"], viewer)).returncode == 0 else None,
            timeout=30,
        )
        assert login.stdout.strip(), login.stderr
        for token in bad.values():
            assert mosquitto_sub(ports["mqtt"], token, "-W", "5").returncode != 0
        # WebSocket with the subprotocol token
        frame = asyncio.run(ws_first_frame(ports["ws"], viewer))
        assert json.loads(frame)["type"] in ("subscribed", "message")
        assert asyncio.run(ws_refused(ports["ws"], bad["bad-0"])) == 1008
        # rotation: old stops, new works everywhere
        rotated = httpx.post(f"{api}/tokens/{viewer_id}/rotate", headers=admin_h, timeout=10)
        assert rotated.status_code == 200
        secrets["viewer-after-rotate"] = rotated.json()["token"]
        old_h = {"Authorization": f"Bearer {viewer}"}
        assert httpx.get(f"{api}/devices", headers=old_h, timeout=10).status_code == 401
        # The broker applies token changes asynchronously (Mosquitto re-reads its access
        # snapshot within ~100-200 ms of the NOTIFY), so poll, bounded, for the refusal.
        wait_for(
            "the rotated-out token to be refused over MQTT",
            lambda: mosquitto_sub(ports["mqtt"], viewer, "-W", "5").returncode != 0,
            timeout=30,
        )
        wait_for(
            "the new token to work over MQTT",
            lambda: mosquitto_sub(ports["mqtt"], secrets["viewer-after-rotate"]).returncode == 0,
            timeout=30,
        )
        revoke = httpx.delete(f"{api}/tokens/{viewer_id}", headers=admin_h, timeout=10)
        assert revoke.status_code == 204
    finally:
        up.stop()
        # every secret `ems up` made for itself (service tokens, device tokens)
        for path in (data_dir / "state").rglob("*.token"):
            secrets[f"file:{path.name}"] = path.read_text().strip()
        logs = {
            str(p): p.read_text(errors="replace")
            for p in (data_dir / "state").rglob("*.log")
            if p.is_file()
        }
        up.close()

    text = "\n".join(output)
    assert "DEBUG" in text, "the stack did not log at DEBUG; the scan would prove little"
    assert any(name.startswith("file:") for name in secrets), "found no device/service tokens"
    everything = {"ems up output": text, **logs}
    for where, content in everything.items():
        for name, secret in {**secrets, **bad}.items():
            assert not leaks(content, secret), f"{name} token appears in {where}"
    for url in URL.findall(text):
        for name, secret in {**secrets, **bad}.items():
            assert not leaks(url, secret), f"{name} token in printed URL {url}"
        assert "token=" not in url.lower(), url
