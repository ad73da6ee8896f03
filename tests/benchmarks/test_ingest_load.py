"""The ingest benchmark's load generator, as the orchestrator drives it, against real Mosquitto.

The process speaks its stdin/stdout protocol (READY, LIMIT, MARK, STOP -> RESULT) and
publishes over a hand-written MQTT 3.1.1 link; these tests check what the benchmark's count
check relies on: every message acknowledged is one sample, each device's seq/ts/energy rise
by one step per message, and anything odd from the broker ends the process loudly.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from benchmarks.ingest_load import (
    KEEPALIVE_S,
    PING_IDLE_S,
    Publisher,
    device_ids,
    parse_args,
)
from benchmarks.mqtt_wire import PINGREQ
from benchmarks.relay_worker import TOKEN_ENV, WorkerError
from ems_contract import parse_telemetry
from tests.broker.clients import Client
from tests.support.mosquitto import MosquittoFactory, write_password_file

REPO_ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0
START_S = 1_700_000_000.0


class LoadProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")

    async def expect(self, word: str) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(WAIT_S):
            while line := (await self.proc.stdout.readline()).decode():
                if line.startswith(word):
                    return line.strip()
        raise AssertionError(f"load exited before {word}: {await self.stderr()}")

    async def acked(self, tag: str) -> int:
        self.send(f"MARK {tag}")
        return int((await self.expect(f"MARK {tag} ")).split()[2])

    async def wait_acked(self, count: int) -> None:
        deadline = time.monotonic() + WAIT_S
        n = 0
        while (acked := await self.acked(f"w{n}")) < count:
            assert time.monotonic() < deadline, f"only {acked} of {count} acknowledged"
            n += 1
            await asyncio.sleep(0.1)

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode(errors="replace")


@asynccontextmanager
async def load_process(
    port: int, *, password: str | None = None, devices: int = 7, inflight: int = 50
) -> AsyncIterator[LoadProcess]:
    """The load generator as ``ingest_fleet`` starts it, with client id = user name "load"."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.ingest_load",
        "--port",
        str(port),
        "--client-id",
        "load",
        "--username",
        "load",
        "--prefix",
        "t",
        "--devices",
        str(devices),
        "--inflight",
        str(inflight),
        "--start-s",
        str(START_S),
        env={**os.environ, TOKEN_ENV: password or "anonymous"},
        cwd=REPO_ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield LoadProcess(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_every_device_gets_consecutive_samples(mosquitto_factory: MosquittoFactory) -> None:
    broker = mosquitto_factory(config_extra="max_queued_messages 100000")
    subscriber = Client(broker.port, "check")
    assert await subscriber.connect()
    assert await subscriber.subscribe("ems/+/telemetry") == 1
    total, devices = 1000, 7
    try:
        async with load_process(broker.port, devices=devices) as load:
            await load.expect("READY")
            load.send("LIMIT 400")  # in two steps, as the orchestrator raises its credit
            await load.wait_acked(400)
            load.send(f"LIMIT {total}")
            await load.wait_acked(total)
            load.send("STOP")
            result = json.loads((await load.expect("RESULT ")).removeprefix("RESULT "))
            assert await load.proc.wait() == 0
        received = [await subscriber.next_message() for _ in range(total)]
    finally:
        subscriber.close()
    assert result["sent"] == result["acked"] == total
    assert result["devices"] == devices

    seqs: dict[str, list[int]] = {}
    for message in received:
        device_id = message.topic.split("/")[1]
        verdict = parse_telemetry(device_id, message.payload)
        assert not verdict.rejected, verdict.rejected
        (sample,) = verdict.samples
        seq = sample.seq
        assert sample.ts == datetime.fromtimestamp(START_S, UTC) + timedelta(seconds=seq)
        assert b'"energy_kwh":%.3f}' % (seq * 0.001) in message.payload
        seqs.setdefault(device_id, []).append(seq)
    assert sorted(seqs) == device_ids("t", devices)
    for device_id, got in seqs.items():
        n = device_ids("t", devices).index(device_id)
        count = total // devices + (1 if n < total % devices else 0)
        assert sorted(got) == list(range(count)), device_id


async def test_packet_ids_wrap_past_65535(mosquitto_factory: MosquittoFactory) -> None:
    broker = mosquitto_factory()
    total = 70_000
    async with load_process(broker.port, devices=500, inflight=1000) as load:
        await load.expect("READY")
        load.send(f"LIMIT {total}")
        await load.wait_acked(total)
        load.send("STOP")
        result = json.loads((await load.expect("RESULT ")).removeprefix("RESULT "))
        assert await load.proc.wait() == 0
    assert result["sent"] == result["acked"] == total


async def test_refused_connect_names_the_return_code(
    mosquitto_factory: MosquittoFactory, tmp_path: Path
) -> None:
    passwords = write_password_file(tmp_path / "passwd", {"load": "right"})
    broker = mosquitto_factory(password_file=passwords)
    async with load_process(broker.port, password="wrong") as load:
        assert await load.proc.wait() == 1
        stderr = await load.stderr()
    assert "refused: return code" in stderr, stderr
    assert "wrong" not in stderr


async def test_broker_going_away_ends_the_process(mosquitto_factory: MosquittoFactory) -> None:
    broker = mosquitto_factory()
    async with load_process(broker.port) as load:
        await load.expect("READY")
        load.send("LIMIT 100")
        await load.wait_acked(100)
        broker.stop()
        async with asyncio.timeout(WAIT_S):
            assert await load.proc.wait() == 1
        stderr = await load.stderr()
    assert stderr.startswith("load: "), stderr
    assert "closed the connection" in stderr or "failed" in stderr, stderr


def _publisher() -> tuple[Publisher, socket.socket]:
    """A publisher whose broker is the other end of a socket pair, under the test's control."""
    ours, broker_side = socket.socketpair()
    ours.setblocking(False)
    broker_side.settimeout(WAIT_S)
    flags = {"--port": "1", "--client-id": "c", "--username": "u", "--prefix": "p"}
    args = parse_args([*(w for f in flags.items() for w in f), "--start-s", str(START_S)])
    return Publisher(ours, args), broker_side


def _read_until(publisher: Publisher, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        assert time.monotonic() < deadline, "nothing arrived"
        publisher.read()


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "closed"
        data += chunk
    return data


def test_idle_link_pings_and_expects_pingresp() -> None:
    publisher, broker_side = _publisher()
    with broker_side, publisher.sock:
        now = time.monotonic()
        publisher.keepalive(now)
        assert not publisher.out
        publisher.keepalive(now + PING_IDLE_S)
        assert bytes(publisher.out) == PINGREQ
        publisher.write()
        assert _recv_exactly(broker_side, 2) == PINGREQ
        broker_side.sendall(b"\xd0\x00")
        _read_until(publisher, lambda: publisher.inbound.pingresps == 1)
        # Answered, so the next idle stretch pings again; that one goes unanswered.
        later = time.monotonic() + PING_IDLE_S
        publisher.keepalive(later)
        assert bytes(publisher.out) == PINGREQ
        publisher.keepalive(later + KEEPALIVE_S - 1)
        with pytest.raises(WorkerError, match="no PINGRESP"):
            publisher.keepalive(later + KEEPALIVE_S + 1)


def test_window_credit_and_pubacks_over_a_socket() -> None:
    publisher, broker_side = _publisher()
    with broker_side, publisher.sock:
        publisher.inflight = 10
        publisher.render(25)
        assert publisher.sent == 10 and publisher.ids.in_flight == 10
        publisher.render(25)  # window full
        assert publisher.sent == 10
        size = len(publisher.out)
        publisher.write()
        assert not publisher.out
        wire = _recv_exactly(broker_side, size)
        for n in range(10):
            head = publisher.heads(len(publisher.payload))[n]
            packet_id = (n + 1).to_bytes(2, "big")
            assert wire.startswith(head + packet_id + publisher.payload)
            wire = wire[len(head) + 2 + len(publisher.payload) :]
            assert f"ems/p-d{n:04d}/telemetry".encode() in head
        assert wire == b""

        broker_side.sendall(b"\x40\x02\x00\x01\x40\x02\x00")  # one PUBACK and a half
        _read_until(publisher, lambda: publisher.acked == 1)
        publisher.render(25)
        assert publisher.sent == 11
        broker_side.sendall(b"\x02")
        _read_until(publisher, lambda: publisher.acked == 2)
        publisher.render(11)  # credit used up
        assert publisher.sent == 11

        broker_side.sendall(b"\x40\x02\x00\x02")  # id 2 again
        with pytest.raises(WorkerError, match="not in flight"):
            _read_until(publisher, lambda: False)
