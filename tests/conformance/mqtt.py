"""Client helpers shared by the conformance tests (paho-mqtt over TCP, MQTT 3.1.1)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.broker.clients import Client, Received
from tests.conformance.raw import RawClient

__all__ = [
    "Client",
    "Received",
    "collect_until",
    "connack_of",
    "wait_until",
]

# Generous bounds for waiting on a condition; no test asserts how fast anything happens.
WAIT_S = 30.0
POLL_S = 0.02


async def collect_until(client: Client, topic: str, payload: bytes) -> list[Received]:
    """Everything ``client`` receives up to and including ``payload`` on ``topic``.

    The sentinel pattern: whatever a broker wrongly delivers before the sentinel shows up
    here, so "nothing else arrived" needs no waiting for a timeout.
    """
    seen: list[Received] = []
    while True:
        message = await client.next_message()
        if message.topic == topic and message.payload == payload:
            return seen
        seen.append(message)


async def connack_of(port: int, client_id: str, **kwargs: object) -> int:
    """The CONNACK code of one raw CONNECT; the connection is closed afterwards."""
    conn = RawClient(port)
    try:
        return await conn.connect(client_id, **kwargs)
    finally:
        conn.close()


async def wait_until(
    condition: Callable[[], bool], *, timeout: float = WAIT_S, what: str = "condition"
) -> None:
    """Poll ``condition`` until it returns true, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout} s")
        await asyncio.sleep(POLL_S)
