"""Slow clients, lag notices and keepalive pings, over real sockets."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from pathlib import Path

import aiomqtt
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.dashboard_ws.conftest import WAIT_S, AdapterFactory, Tokens, recv_json, subscribe
from tests.support.mosquitto import MosquittoBroker

PAYLOAD_BYTES = 48 * 1024


def _max_send_buffer() -> int:
    # The most a kernel send buffer on this box can grow to by autotuning.
    text = Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()
    return int(text[2]) if len(text) == 3 else 4 * 1024 * 1024


def _padding() -> str:
    return base64.b64encode(os.urandom(PAYLOAD_BYTES * 3 // 4)).decode()


async def test_slow_client_gets_lag_notice_and_never_slows_others(
    adapter_factory: AdapterFactory,
    mosquitto_broker: MosquittoBroker,
    publisher: aiomqtt.Client,
    tokens: Tokens,
) -> None:
    # Enough data to fill the slow reader's small receive buffer, the server's largest
    # possible send buffer and the outbox several times over.
    total = 3 * (_max_send_buffer() + 1024 * 1024)
    count = total // PAYLOAD_BYTES + 1
    headers = {"Authorization": f"Bearer {tokens.viewer}"}
    queue_size = 32
    async with adapter_factory(mosquitto_broker, ws_queue_size=queue_size) as server:
        slow_sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # A fixed small receive buffer turns off autotuning, so the slow reader's kernel
        # cannot absorb the backlog for it.
        slow_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow_sock.connect((server.host, server.port))
        async with (
            connect(f"{server.ws_url}/ws", additional_headers=headers) as fast,
            connect(
                f"{server.ws_url}/ws",
                additional_headers=headers,
                sock=slow_sock,
                compression=None,
                max_queue=1,
            ) as slow,
        ):
            await subscribe(fast, "ems/dev1/telemetry")
            await subscribe(slow, "ems/dev1/telemetry")
            fast_frames: list[dict[str, object]] = []
            progress = asyncio.Event()

            async def read_fast() -> None:
                while len(fast_frames) < count:
                    fast_frames.append(await recv_json(fast))
                    progress.set()

            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(read_fast(), name="fast-reader")
                for n in range(count):
                    # Pace the publisher by the fast reader (a condition, not a clock), so
                    # the fast client can never fall a whole outbox behind on its own.
                    while n - len(fast_frames) >= queue_size // 2:
                        progress.clear()
                        await progress.wait()
                    body = {"v": 1, "n": n, "pad": _padding()}
                    await publisher.publish("ems/dev1/telemetry", json.dumps(body), qos=1)

            # The fast client got every message, in order, with no lag notice, while the
            # slow one has not read anything at all.
            assert [f["type"] for f in fast_frames] == ["message"] * count
            assert [f["payload"]["n"] for f in fast_frames] == list(range(count))  # type: ignore[index]

            # The fan-out routes each message to both clients in one step, so the slow
            # client's share of the last message is already queued or dropped by now.
            seen: list[int] = []
            dropped = 0
            while not seen or seen[-1] != count - 1:
                frame = await recv_json(slow)
                if frame["type"] == "lag":
                    assert frame["dropped"] > 0
                    dropped += frame["dropped"]
                else:
                    seen.append(frame["payload"]["n"])
    assert dropped > 0
    assert seen == sorted(seen)
    assert len(seen) + dropped == count


def _split_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of each unmasked server frame (control frames are short)."""
    frames = []
    while data:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        assert length < 126, "control frames carry at most 125 bytes"
        frames.append((opcode, data[2 : 2 + length]))
        data = data[2 + length :]
    return frames


async def _raw_handshake(host: str, port: int, token: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never answers pings."""
    sock = socket.create_connection((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET /ws HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Upgrade: websocket\r\n"
        "Connection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    )
    sock.sendall(request.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = await asyncio.to_thread(sock.recv, 4096)
        assert chunk, "server closed during the handshake"
        response += chunk
    assert response.startswith(b"HTTP/1.1 101"), response
    return sock


async def test_client_missing_pings_is_dropped(
    adapter_factory: AdapterFactory, mosquitto_broker: MosquittoBroker, tokens: Tokens
) -> None:
    async with (
        adapter_factory(mosquitto_broker, ws_ping_interval=1.0, ws_ping_misses=3) as server,
        connect(
            f"{server.ws_url}/ws", additional_headers={"Authorization": f"Bearer {tokens.viewer}"}
        ) as healthy,
    ):
        mute = await _raw_handshake(server.host, server.port, tokens.viewer)
        try:
            received = b""
            async with asyncio.timeout(WAIT_S):
                while chunk := await asyncio.to_thread(mute.recv, 4096):
                    received += chunk
        finally:
            mute.close()
        frames = _split_frames(received)
        # Pings first, then a close frame with code 1011 (keepalive ping timeout).
        assert {opcode for opcode, _ in frames[:-1]} == {0x9}
        opcode, payload = frames[-1]
        assert opcode == 0x8
        assert int.from_bytes(payload[:2], "big") == 1011

        # The client that answers pings lived through the same intervals and still works.
        await healthy.send(json.dumps({"type": "ping"}))
        assert await recv_json(healthy) == {"type": "pong"}
        try:
            await healthy.ping()
        except ConnectionClosed as exc:  # pragma: no cover - the failure being tested
            raise AssertionError("a responsive client was dropped") from exc
