"""``ems broker --mosquitto``: EMS tokens as passwords, device binding, rate limit, CLI clients."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable

import pytest

from ems_access import hash_token
from tests.broker.clients import Client
from tests.broker.conftest import MakeToken
from tests.support.ems_mosquitto import EmsMosquittoProcess

MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"
MOSQUITTO_PUB = "/usr/bin/mosquitto_pub"


async def test_valid_token_with_free_text_username_is_accepted(
    mq_token: MakeToken, mq_clients: Callable[..., Client]
) -> None:
    token = await mq_token("viewer")
    assert await mq_clients("wall", username="anything at all", password=token).connect()


@pytest.mark.parametrize("password", [None, "", "ems_not-a-real-token-0123456789abcdefghij"])
async def test_missing_or_unknown_token_is_refused(
    password: str | None, mq_clients: Callable[..., Client]
) -> None:
    client = mq_clients("someone", username="ops", password=password)
    assert not await client.connect()


async def test_device_token_is_bound_to_its_device_id(
    mq_token: MakeToken, mq_clients: Callable[..., Client]
) -> None:
    token = await mq_token("device", device_id="dev-a")
    assert not await mq_clients("dev-b", username="dev-a", password=token).connect()
    assert not await mq_clients("dev-a", username="ops", password=token).connect()
    assert not await mq_clients("dev-a", username=None, password=token).connect()
    assert await mq_clients("dev-a", username="dev-a", password=token).connect()


async def test_other_tokens_cannot_take_a_device_client_id(
    mq_token: MakeToken, mq_clients: Callable[..., Client]
) -> None:
    device = await mq_token("device", device_id="dev-a")
    admin = await mq_token("admin")
    assert await mq_clients("dev-a", username="dev-a", password=device).connect()
    assert not await mq_clients("dev-a", username="dev-a", password=admin).connect()


async def test_device_reconnect_replaces_its_old_session(
    mq_token: MakeToken, mq_clients: Callable[..., Client]
) -> None:
    token = await mq_token("device", device_id="dev-a")
    first = mq_clients("dev-a", username="dev-a", password=token)
    assert await first.connect()
    second = mq_clients("dev-a", username="dev-a", password=token)
    assert await second.connect()
    await first.wait_disconnected()
    assert await second.subscribe("ems/dev-a/cmd") == 1


async def test_failed_logins_are_rate_limited_per_address(
    make_token: MakeToken, ems_mosquitto_factory: Callable[..., EmsMosquittoProcess]
) -> None:
    broker = ems_mosquitto_factory(EMS_AUTH_FAIL_LIMIT="3", EMS_AUTH_FAIL_WINDOW="3600")
    token = await make_token("viewer")
    await asyncio.to_thread(broker.wait_synced)
    made = []
    try:
        for i in range(3):
            client = Client(broker.port, f"guess-{i}", username="x", password=f"wrong-{i}")
            made.append(client)
            assert not await client.connect()
        # Blocked now: even a valid token is refused without being checked.
        client = Client(broker.port, "good", username="x", password=token)
        made.append(client)
        assert not await client.connect()
    finally:
        for client in made:
            client.close()
    assert "rate limited" in broker.logs()


async def test_logs_never_hold_tokens(
    mq_token: MakeToken, ems_mosquitto: EmsMosquittoProcess, mq_clients: Callable[..., Client]
) -> None:
    token = await mq_token("operator")
    # A token pasted into the username and client id fields must be redacted too.
    assert not await mq_clients(token, username=token, password="wrong").connect()
    assert await mq_clients("ok", username=token, password=token).connect()
    client = mq_clients("ok2", username="ops", password=token)
    assert await client.connect()
    assert await client.subscribe("ems/#") == 1

    async def logged() -> bool:
        return "MQTT connection accepted" in ems_mosquitto.logs()

    for _ in range(200):
        if await logged():
            break
        await asyncio.sleep(0.05)
    logs = ems_mosquitto.logs()
    assert "refused MQTT connection" in logs
    assert token not in logs
    assert hash_token(token) not in logs


async def test_real_mosquitto_clients_with_user_and_password(
    mq_token: MakeToken, ems_mosquitto: EmsMosquittoProcess
) -> None:
    ops = await mq_token("operator")
    sub = subprocess.Popen(
        [MOSQUITTO_SUB, "-h", "127.0.0.1", "-p", str(ems_mosquitto.port), "-u", "ops",
         "-P", ops, "-t", "ems/#", "-v", "-C", "1", "-W", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        # Publish until the subscriber (connecting concurrently) has seen one message.
        for _ in range(600):
            subprocess.run(
                [MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(ems_mosquitto.port), "-u", "ops",
                 "-P", ops, "-t", "ems/dev-a/cmd", "-m", "hello", "-q", "1"],
                check=True, capture_output=True, timeout=30,
            )  # fmt: skip
            if sub.poll() is not None:
                break
            await asyncio.sleep(0.05)
        out, err = sub.communicate(timeout=30)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    assert sub.returncode == 0, err
    assert out.decode().strip() == "ems/dev-a/cmd hello"
    refused = subprocess.run(
        [MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(ems_mosquitto.port), "-u", "ops",
         "-P", "wrong-token", "-t", "ems/dev-a/cmd", "-m", "x"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
