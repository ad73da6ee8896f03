"""``ems broker --mosquitto``: per-token ACLs, retained delivery, live revocation and expiry."""

from __future__ import annotations

import asyncio
import queue
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ems_access import AclRule, create_token, revoke_token, set_acl
from tests.broker.clients import Client
from tests.broker.conftest import MakeToken, Pool
from tests.support.ems_mosquitto import EmsMosquittoProcess

POLL_S = 0.05
POLLS = 600


def _no_message(client: Client) -> bool:
    try:
        client.messages.get(timeout=0.5)
    except queue.Empty:
        return True
    return False


async def test_device_publishes_only_its_own_topics(
    mq_token: MakeToken, mq_clients: Callable[..., Client]
) -> None:
    device = await mq_token("device", device_id="dev-a")
    service = await mq_token("service")
    watcher = mq_clients("watcher", username="svc", password=service)
    assert await watcher.connect()
    assert await watcher.subscribe("ems/#") == 1
    dev = mq_clients("dev-a", username="dev-a", password=device)
    assert await dev.connect()
    # Denied QoS 1 publishes are acknowledged and dropped by Mosquitto; the sentinel that
    # follows proves nothing came before it.
    await dev.publish("ems/dev-b/telemetry", b"forged")
    await dev.publish("ems/dev-a/cmd", b"not mine to write")
    await dev.publish("ems/dev-a/telemetry", b"ok")
    seen = await watcher.wait_for("ems/dev-a/telemetry")
    assert [m.topic for m in seen] == ["ems/dev-a/telemetry"]


async def test_subscribe_needs_a_covering_read_rule(
    mq_token: MakeToken, mq_clients: Callable[..., Client]
) -> None:
    device = await mq_token("device", device_id="dev-a")
    dev = mq_clients("dev-a", username="dev-a", password=device)
    assert await dev.connect()
    assert await dev.subscribe("ems/dev-a/cmd") == 1
    assert await dev.subscribe("ems/dev-b/cmd") == 128
    assert await dev.subscribe("ems/+/cmd") == 128
    assert await dev.subscribe("#") == 128


async def test_receive_is_checked_per_message_including_retained(
    mq_token: MakeToken, mq_clients: Callable[..., Client]
) -> None:
    service = await mq_token("service")
    narrow = await mq_token("viewer", acl=[AclRule("ems/dev-a/#", "read")])
    publisher = mq_clients("pub", username="svc", password=service)
    assert await publisher.connect()
    await publisher.publish("ems/dev-b/status", b"b-retained", retain=True)
    await publisher.publish("ems/dev-a/status", b"a-retained", retain=True)

    viewer = mq_clients("viewer", username="v", password=narrow)
    assert await viewer.connect()
    assert await viewer.subscribe("ems/dev-a/#") == 1
    assert await viewer.subscribe("ems/dev-b/#") == 128
    first = await viewer.next_message()
    assert (first.topic, first.payload, first.retain) == ("ems/dev-a/status", b"a-retained", True)
    assert _no_message(viewer)


async def test_deny_rule_shadows_later_rules_and_placeholders_bind(
    mq_token: MakeToken, mq_clients: Callable[..., Client]
) -> None:
    token = await mq_token(
        "viewer",
        acl=[
            AclRule("ems/secret/#", "deny"),
            AclRule("ems/#", "read"),
            AclRule("users/%u/#", "readwrite"),
        ],
    )
    client = mq_clients("c1", username="alice", password=token)
    assert await client.connect()
    assert await client.subscribe("ems/secret/x") == 128
    assert await client.subscribe("ems/#") == 128  # overlaps the deny rule
    assert await client.subscribe("ems/dev-a/#") == 1
    assert await client.subscribe("users/alice/#") == 1
    assert await client.subscribe("users/bob/#") == 128
    await client.publish("users/alice/note", b"mine")
    message = await client.next_message()
    assert (message.topic, message.payload) == ("users/alice/note", b"mine")


async def test_revocation_closes_the_live_session(
    db_pool: Pool, ems_mosquitto: EmsMosquittoProcess, mq_clients: Callable[..., Client]
) -> None:
    principal, token = await create_token(db_pool, role="operator", label="to revoke")
    await asyncio.to_thread(ems_mosquitto.wait_synced)
    client = mq_clients("ops", username="ops", password=token)
    assert await client.connect()
    await revoke_token(db_pool, principal.token_id)
    await client.wait_disconnected()
    assert "token revoked" in ems_mosquitto.logs()
    assert not await mq_clients("ops2", username="ops", password=token).connect()


async def test_acl_edit_applies_to_the_live_session(
    db_pool: Pool, ems_mosquitto: EmsMosquittoProcess, mq_clients: Callable[..., Client]
) -> None:
    principal, token = await create_token(db_pool, role="service", label="narrowed")
    await asyncio.to_thread(ems_mosquitto.wait_synced)
    client = mq_clients("svc", username="svc", password=token)
    assert await client.connect()
    assert await client.subscribe("ems/dev-a/#") == 1
    await set_acl(db_pool, principal.token_id, [AclRule("ems/dev-b/#", "readwrite")])
    await asyncio.to_thread(ems_mosquitto.wait_synced)
    # The session lives on, but delivery on the old subscription is now refused.
    await client.publish("ems/dev-a/status", b"hidden")
    await client.publish("ems/dev-b/status", b"visible")
    assert await client.subscribe("ems/dev-b/#") == 1
    await client.publish("ems/dev-b/status", b"visible")
    message = await client.next_message()
    assert (message.topic, message.payload) == ("ems/dev-b/status", b"visible")


async def test_expiry_closes_the_session(
    db_pool: Pool, ems_mosquitto: EmsMosquittoProcess, mq_clients: Callable[..., Client]
) -> None:
    expires = datetime.now(UTC) + timedelta(seconds=3)
    _, token = await create_token(db_pool, role="viewer", label="short", expires_at=expires)
    await asyncio.to_thread(ems_mosquitto.wait_synced)
    client = mq_clients("v", username="v", password=token)
    assert await client.connect()
    await client.wait_disconnected()
    assert datetime.now(UTC) >= expires
    assert not await mq_clients("v2", username="v", password=token).connect()


async def test_revoked_device_last_will_is_published(
    db_pool: Pool,
    mq_token: MakeToken,
    ems_mosquitto: EmsMosquittoProcess,
    mq_clients: Callable[..., Client],
) -> None:
    await db_pool.execute("INSERT INTO devices (device_id) VALUES ('dev-w')")
    principal, device = await create_token(db_pool, role="device", label="will", device_id="dev-w")
    service = await mq_token("service")
    watcher = mq_clients("watcher", username="svc", password=service)
    assert await watcher.connect()
    assert await watcher.subscribe("ems/dev-w/status") == 1
    dev = mq_clients(
        "dev-w",
        username="dev-w",
        password=device,
        will=("ems/dev-w/status", b'{"v": 1, "state": "offline"}', 1, True),
    )
    assert await dev.connect()
    await revoke_token(db_pool, principal.token_id)
    await dev.wait_disconnected()
    message = await watcher.next_message()
    assert message.payload == b'{"v": 1, "state": "offline"}'
