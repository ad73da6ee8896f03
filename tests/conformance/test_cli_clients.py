"""The real ``mosquitto_pub`` and ``mosquitto_sub`` with ``-u``/``-P``, as operators use them."""

from __future__ import annotations

import asyncio
import subprocess

from tests.conformance.conftest import Tokens
from tests.conformance.mqtt import WAIT_S
from tests.support.brokers import BrokerUnderTest

STATUS = '{"v": 1, "state": "online"}'


def _run(broker: BrokerUnderTest, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, "-h", broker.host, "-p", str(broker.port), "-V", "mqttv311", *args],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
    )


async def test_mosquitto_pub_and_sub_with_tokens(broker: BrokerUnderTest, tokens: Tokens) -> None:
    device = await tokens.make("device", device_id="dev1")
    viewer = await tokens.make("viewer")
    device_login = ("-i", "dev1", "-u", "dev1", "-P", device.token)

    published = await asyncio.to_thread(
        _run, broker, "mosquitto_pub", *device_login, "-q", "1", "-r",
        "-t", "ems/dev1/status", "-m", STATUS,
    )  # fmt: skip
    assert published.returncode == 0, published.stderr
    # The operator recipe of README.md: a viewer token reads everything under ems/.
    read = await asyncio.to_thread(
        _run, broker, "mosquitto_sub", "-u", "ops", "-P", viewer.token,
        "-t", "ems/#", "-v", "-C", "1", "-W", str(int(WAIT_S)),
    )  # fmt: skip
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == f"ems/dev1/status {STATUS}"

    # Live messages: a subscriber running while the device publishes telemetry.
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", broker.host, "-p", str(broker.port), "-V", "mqttv311",
         "-u", "ops", "-P", viewer.token, "-q", "1", "-t", "ems/dev1/telemetry",
         "-C", "1", "-W", str(int(WAIT_S))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        # mosquitto_sub says nothing when it has subscribed, so publish until it has one.
        async def publish_until_received() -> None:
            while sub.poll() is None:
                sent = await asyncio.to_thread(
                    _run, broker, "mosquitto_pub", *device_login, "-q", "1",
                    "-t", "ems/dev1/telemetry", "-m", "sample",
                )  # fmt: skip
                assert sent.returncode == 0, sent.stderr
                await asyncio.sleep(0.1)

        await asyncio.wait_for(publish_until_received(), WAIT_S)
        out, err = sub.communicate(timeout=WAIT_S)
        assert sub.returncode == 0, err
        assert out.strip() == "sample"
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()


async def test_mosquitto_clients_refused_with_a_wrong_token_or_id(
    broker: BrokerUnderTest, tokens: Tokens
) -> None:
    device = await tokens.make("device", device_id="dev1")
    viewer = await tokens.make("viewer")
    attempts = {
        "pub, wrong token": _run(
            broker, "mosquitto_pub", "-i", "dev1", "-u", "dev1", "-P", "ems_" + "w" * 43,
            "-t", "ems/dev1/telemetry", "-m", "x", "-q", "1",
        ),
        "pub, other device's id": _run(
            broker, "mosquitto_pub", "-i", "dev2", "-u", "dev2", "-P", device.token,
            "-t", "ems/dev2/telemetry", "-m", "x", "-q", "1",
        ),
        "sub, wrong token": _run(
            broker, "mosquitto_sub", "-u", "ops", "-P", viewer.token[:-1],
            "-t", "ems/#", "-C", "1", "-W", "5",
        ),
    }  # fmt: skip
    # The clients print the CONNACK refusal ("Connection Refused: not authorised." or
    # "...bad user name or password.") and exit non-zero.
    not_refused = {
        why: (r.returncode, r.stderr)
        for why, r in attempts.items()
        if r.returncode == 0 or "refused" not in r.stderr.lower()
    }
    assert not_refused == {}
