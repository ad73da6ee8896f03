"""Publish/subscribe/receive ACLs enforced by the broker, retained messages included."""

from __future__ import annotations

import asyncio
import json
import subprocess

from ems_access import AclRule, authenticate, set_acl
from tests.broker.clients import WAIT_S
from tests.broker.conftest import MakeClient, MakeToken, Pool
from tests.support.ems_broker import EmsBrokerProcess

MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"
STATUS = json.dumps({"v": 1, "state": "online", "ts": "2026-11-22T08:15:03Z"}).encode()


async def test_device_publishes_only_its_own_topics(
    make_token: MakeToken, clients: MakeClient
) -> None:
    device = await make_token("device", device_id="dev1")
    admin = await make_token("admin")
    watcher = clients("watcher", username="ops", password=admin)
    assert await watcher.connect()
    assert await watcher.subscribe("ems/#") == 1
    dev = clients("dev1", username="dev1", password=device)
    assert await dev.connect()
    await dev.publish("ems/dev1/telemetry", b"mine")
    await dev.publish("ems/dev2/telemetry", b"forged")
    await dev.publish("ems/dev1/cmd", b"self-command")
    await dev.publish("elsewhere/x", b"off-tree")
    # The device's own later message is a barrier: one publisher's messages stay in order.
    await dev.publish("ems/dev1/status", b"barrier", retain=True)
    seen = await watcher.wait_for("ems/dev1/status")
    assert [(m.topic, m.payload) for m in seen] == [
        ("ems/dev1/telemetry", b"mine"),
        ("ems/dev1/status", b"barrier"),
    ]


async def test_device_subscriptions(make_token: MakeToken, clients: MakeClient) -> None:
    device = await make_token("device", device_id="dev1")
    dev = clients("dev1", username="dev1", password=device)
    assert await dev.connect()
    assert await dev.subscribe("ems/#") == 128
    assert await dev.subscribe("#") == 128
    assert await dev.subscribe("ems/+/cmd") == 128
    assert await dev.subscribe("ems/dev2/cmd") == 128
    assert await dev.subscribe("ems/dev1/#") == 128
    assert await dev.subscribe("ems/dev1/cmd") == 1


async def test_device_receives_its_commands_only(
    make_token: MakeToken, clients: MakeClient
) -> None:
    device = await make_token("device", device_id="dev1")
    operator = await make_token("operator")
    dev = clients("dev1", username="dev1", password=device)
    assert await dev.connect()
    assert await dev.subscribe("ems/dev1/cmd") == 1
    ops = clients("ops", username="ops", password=operator)
    assert await ops.connect()
    await ops.publish("ems/dev2/cmd", b"not for dev1")
    await ops.publish("ems/dev1/cmd", b"for dev1")
    assert (await dev.next_message()).payload == b"for dev1"
    assert dev.messages.empty()


async def test_viewer_reads_but_cannot_publish(make_token: MakeToken, clients: MakeClient) -> None:
    viewer = await make_token("viewer")
    admin = await make_token("admin")
    view = clients("viewer", username="ops", password=viewer)
    assert await view.connect()
    assert await view.subscribe("ems/#") == 1
    assert await view.subscribe("#") == 128
    adm = clients("admin", username="ops", password=admin)
    assert await adm.connect()
    assert await adm.subscribe("ems/#") == 1
    await view.publish("ems/dev1/cmd", b'{"forged": true}')
    await view.publish("ems/dev1/telemetry", b"forged")
    # The broker PUBACKs only after routing, so a later message from anyone is a barrier.
    await adm.publish("ems/dev1/status", b"barrier")
    seen = await adm.wait_for("ems/dev1/status")
    assert [m.payload for m in seen] == [b"barrier"]
    assert (await view.next_message()).payload == b"barrier"


async def test_operator_commands(make_token: MakeToken, clients: MakeClient) -> None:
    operator = await make_token("operator")
    admin = await make_token("admin")
    adm = clients("admin", username="ops", password=admin)
    assert await adm.connect()
    assert await adm.subscribe("ems/#") == 1
    ops = clients("ops", username="ops", password=operator)
    assert await ops.connect()
    await ops.publish("ems/dev1/telemetry", b"forged")
    await ops.publish("ems/dev1/cmd", b"command")
    seen = await adm.wait_for("ems/dev1/cmd")
    assert [m.payload for m in seen] == [b"command"]


async def test_retained_messages_respect_receive_acl(
    make_token: MakeToken, clients: MakeClient
) -> None:
    admin = await make_token("admin")
    viewer = await make_token(
        "viewer", acl=[AclRule("ems/dev1/#", "read"), AclRule("ems/+/status", "read")]
    )
    adm = clients("admin", username="ops", password=admin)
    assert await adm.connect()
    assert await adm.subscribe("secret/#") == 1
    await adm.publish("secret/key", b"s3cr3t", retain=True)
    await adm.publish("ems/dev2/telemetry", b"dev2 data", retain=True)
    await adm.publish("ems/dev1/status", STATUS, retain=True)
    view = clients("viewer", username="ops", password=viewer)
    assert await view.connect()
    # amqtt 0.12.1 pushed retained messages of *other* clients' subscriptions on connect.
    assert await view.subscribe("ems/+/status") == 1
    first = await view.next_message()
    assert (first.topic, first.retain) == ("ems/dev1/status", True)
    assert await view.subscribe("ems/dev1/#") == 1
    again = await view.next_message()
    assert again.topic == "ems/dev1/status"
    assert view.messages.empty()


async def test_acl_changes_apply_to_live_sessions(
    make_token: MakeToken, clients: MakeClient, db_pool: Pool
) -> None:
    viewer = await make_token("viewer")
    admin = await make_token("admin")
    view = clients("viewer", username="ops", password=viewer)
    assert await view.connect()
    assert await view.subscribe("ems/#") == 1
    adm = clients("admin", username="ops", password=admin)
    assert await adm.connect()
    principal = await authenticate(db_pool, viewer)
    assert principal is not None
    await set_acl(db_pool, principal.token_id, [AclRule("ems/dev1/#", "read")])
    # Keep publishing to a now-forbidden device until the broker stops delivering it; the
    # allowed device's message right after each attempt is the barrier.
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        await adm.publish("ems/dev2/telemetry", b"forbidden now")
        await adm.publish("ems/dev1/telemetry", b"allowed")
        seen = await view.wait_for("ems/dev1/telemetry")
        if [m.topic for m in seen] == ["ems/dev1/telemetry"]:
            break
        assert asyncio.get_running_loop().time() < deadline, "ACL change never applied"


async def test_mosquitto_sub_receives_retained_status(
    make_token: MakeToken, clients: MakeClient, ems_broker: EmsBrokerProcess
) -> None:
    device = await make_token("device", device_id="dev1")
    admin = await make_token("admin")
    dev = clients("dev1", username="dev1", password=device)
    assert await dev.connect()
    await dev.publish("ems/dev1/status", STATUS, retain=True)
    result = await asyncio.to_thread(
        subprocess.run,
        [
            MOSQUITTO_SUB,
            "-h", ems_broker.host,
            "-p", str(ems_broker.port),
            "-u", "ops",
            "-P", admin,
            "-t", "ems/#",
            "-v",
            "-C", "1",
            "-W", str(int(WAIT_S)),
        ],
        capture_output=True,
        text=True,
        timeout=WAIT_S * 2,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ems/dev1/status {STATUS.decode()}"


async def test_mosquitto_sub_with_a_wrong_token_is_refused(
    ems_broker: EmsBrokerProcess, make_token: MakeToken
) -> None:
    await make_token("admin")
    result = await asyncio.to_thread(
        subprocess.run,
        [MOSQUITTO_SUB, "-h", ems_broker.host, "-p", str(ems_broker.port), "-u", "ops",
         "-P", "ems_wrong", "-t", "ems/#", "-C", "1", "-W", str(int(WAIT_S))],
        capture_output=True,
        text=True,
        timeout=WAIT_S * 2,
    )  # fmt: skip
    assert result.returncode != 0
    assert "password" in result.stderr.lower()
