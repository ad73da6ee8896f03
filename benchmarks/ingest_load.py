"""One load-generator process of the ingest benchmark: many simulated devices, one MQTT link.

``python -m benchmarks.ingest_load --port P --prefix real-p0 --devices 500 ...`` with the
MQTT password in ``EMS_BENCH_TOKEN`` (a ``service`` token allowed to write
``ems/+/telemetry``, so one connection can speak for many devices, like a gateway).

Messages go round-robin over the devices, so every device's ``seq`` (and ``ts``, one second
per sample) increases by one per message; payloads are the contract's 3-phase sample, a
template filled in with ``%`` (no JSON encoder on the hot path).

The MQTT side is hand-written (``mqtt_wire``) on a plain non-blocking socket rather than
paho: the load shares two cores with the broker, PostgreSQL and the ingest it measures, and
paho's ~155 µs of CPU per message would alone take 1.5 cores at 10,000 msg/s (this costs
about 3 µs). Every PUBLISH head (fixed header and topic) is pre-built per device; a payload
does not name its device, so one rendering serves a whole round of devices; everything the
credit and window allow goes out in one ``send``.

Control is line-based, so the orchestrator can keep the pipeline saturated without letting
the broker's queue overflow (which would drop QoS 1 messages it already acknowledged):
- stdin ``LIMIT n``: publish until ``n`` messages in all have been sent;
- stdin ``MARK tag``: print ``MARK tag <acked> <monotonic_ns>``;
- stdin ``STOP`` (or EOF): stop sending, wait for every PUBACK, print ``RESULT <json>``.
Prints ``READY`` once connected.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import select
import socket
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.mqtt_wire import (
    CONNACK_REASONS,
    DISCONNECT,
    MAX_PACKET_ID,
    PACKET_ID_BYTES,
    PINGREQ,
    InboundReader,
    PacketIds,
    ProtocolError,
    PublishHeads,
    connack_code,
    connect_packet,
)
from benchmarks.relay_worker import CONNECT_TIMEOUT_S, TOKEN_ENV, WorkerError

PHASES = ("A", "B", "C")
# The nine measurements of one phase; only energy_kwh moves (it must not decrease).
_PHASE = (
    b'"%s":{"voltage_rms":230.4,"current_rms":4.98,"power_watt":1102.5,"power_var":210.0,'
    b'"power_va":1147.4,"power_factor":0.961,"voltage_thd":1.8,"current_thd":6.2,'
    b'"energy_kwh":%%(e)s}'
)
DRAIN_TIMEOUT_S = 60.0
KEEPALIVE_S = 60
# Ping after half the keepalive without writing; give up if the PINGRESP takes a whole one.
PING_IDLE_S = KEEPALIVE_S / 2
# Stop rendering while this much is still waiting for the socket to take it.
OUT_HIGH_BYTES = 1 << 20
RECV_BYTES = 1 << 16
# Longest sleep in select; control commands wake it at once through a pipe.
TICK_S = 1.0
# Shortest turn of the loop. Under load the broker's PUBACKs trickle in a few at a time, and
# a turn per select wake-up (select, recv, render, send) for two or three messages cost the
# load about 7 µs per message, CPU taken from the two cores it shares with what it measures.
# Waiting out the rest of 2 ms lets each turn handle a few dozen; with a window of 1,000 in
# flight per connection that caps nothing (500,000 msg/s per connection).
MIN_TURN_S = 0.002


def device_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-d{i:04d}" for i in range(count)]


def template(boot: str) -> bytes:
    """A sample with ``%(ts)s``, ``%(seq)d`` and ``%(e)s`` left to fill."""
    phases = b",".join(_PHASE % p.encode() for p in PHASES)
    return (
        b'{"v":1,"ts":"%(ts)s","seq":%(seq)d,"boot":"'
        + boot.encode()
        + b'","phases":{'
        + phases
        + b"}}"
    )


class Timestamps:
    """RFC 3339 strings for seq 0, 1, 2... (one second apart), shared by all devices."""

    def __init__(self, start: datetime) -> None:
        self._start = start
        self._made: list[bytes] = []

    def __getitem__(self, seq: int) -> bytes:
        while len(self._made) <= seq:
            at = self._start + timedelta(seconds=len(self._made))
            self._made.append(at.strftime("%Y-%m-%dT%H:%M:%S.000Z").encode())
        return self._made[seq]


class _Control:
    """stdin commands, read by a thread; each one wakes the publishing loop via a pipe."""

    def __init__(self) -> None:
        self.limit = 0
        self.stop = threading.Event()
        self.marks: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        threading.Thread(target=self._read, name="stdin", daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            word, _, arg = line.strip().partition(" ")
            if word == "LIMIT":
                self.limit = max(self.limit, int(arg))
            elif word == "MARK":
                self.marks.put(arg)
            elif word == "STOP":
                break
            self._wake()
        self.stop.set()
        self._wake()

    def _wake(self) -> None:
        # A full pipe holds wake-ups the loop has not read yet: it will wake anyway.
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b".")

    def woken(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(self.wake_fd, 4096)


def open_link(host: str, port: int, connect: bytes) -> socket.socket:
    """A TCP connection past CONNACK, non-blocking from then on."""
    sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(connect)
        reply = b""
        while len(reply) < 4:
            try:
                chunk = sock.recv(4 - len(reply))
            except TimeoutError:
                raise WorkerError(
                    f"no CONNACK from {host}:{port} in {CONNECT_TIMEOUT_S:.0f} s"
                ) from None
            if not chunk:
                raise WorkerError(f"{host}:{port} closed the connection before CONNACK")
            reply += chunk
        try:
            code = connack_code(reply)
        except ProtocolError as exc:
            raise WorkerError(f"connect to {host}:{port}: {exc}") from exc
        if code:
            reason = CONNACK_REASONS.get(code, "unknown")
            raise WorkerError(f"connect to {host}:{port} refused: return code {code} ({reason})")
        sock.setblocking(False)
        return sock
    except BaseException:
        sock.close()
        raise


class Publisher:
    """The socket side: render up to the credit and window, write what the socket takes,
    count PUBACKs, ping when idle."""

    def __init__(self, sock: socket.socket, args: argparse.Namespace) -> None:
        self.sock = sock
        self.inflight = args.inflight
        self.devices = args.devices
        self.body = template(args.boot)
        self.stamps = Timestamps(datetime.fromtimestamp(args.start_s, UTC))
        self.heads = PublishHeads(
            [f"ems/{d}/telemetry" for d in device_ids(args.prefix, args.devices)]
        )
        self.ids = PacketIds()
        self.inbound = InboundReader(self.ids)
        self.out = bytearray()
        self.sent = 0
        self._seq = -1
        self.payload = b""
        self._round: list[bytes] = []
        self._last_write = time.monotonic()
        self._ping_at: float | None = None
        self._pingresps = 0

    @property
    def acked(self) -> int:
        return self.inbound.acked

    def render(self, limit: int) -> None:
        """Append as many PUBLISH packets as the credit and the window allow."""
        count = min(limit - self.sent, self.inflight - self.ids.in_flight)
        if count <= 0 or len(self.out) >= OUT_HIGH_BYTES:
            return
        parts: list[bytes] = []
        append, take, ids = parts.append, self.ids.take, PACKET_ID_BYTES
        sent, devices = self.sent, self.devices
        seq, device = divmod(sent, devices)
        payload, heads = self.payload, self._round
        for _ in range(count):
            if seq != self._seq:
                # Every device's sample n is the same bytes: render it once per round.
                self._seq = seq
                e = b"%.3f" % (seq * 0.001)
                payload = self.body % {b"ts": self.stamps[seq], b"seq": seq, b"e": e}
                heads = self.heads(len(payload))
                self.payload, self._round = payload, heads
            append(heads[device])
            append(ids[take()])
            append(payload)
            device += 1
            if device == devices:
                seq, device = seq + 1, 0
        self.sent = sent + count
        self.out += b"".join(parts)

    def write(self) -> None:
        try:
            written = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            raise WorkerError(
                f"writing to the broker failed after {self.acked} PUBACKs: {exc}"
            ) from exc
        del self.out[:written]
        self._last_write = time.monotonic()

    def read(self) -> None:
        try:
            data = self.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            raise WorkerError(
                f"reading from the broker failed after {self.acked} PUBACKs: {exc}"
            ) from exc
        if not data:
            raise WorkerError(
                f"the broker closed the connection ({self.acked} of {self.sent} acknowledged)"
            )
        try:
            self.inbound.feed(data)
        except ProtocolError as exc:
            raise WorkerError(str(exc)) from exc
        if self.inbound.pingresps != self._pingresps:
            self._pingresps, self._ping_at = self.inbound.pingresps, None

    def keepalive(self, now: float) -> None:
        if self._ping_at is not None:
            if now - self._ping_at > KEEPALIVE_S:
                raise WorkerError(f"no PINGRESP in {KEEPALIVE_S} s")
        elif now - self._last_write >= PING_IDLE_S:
            self.out += PINGREQ
            self._ping_at = now

    def close(self) -> None:
        try:
            self.sock.setblocking(True)
            self.sock.settimeout(1.0)
            self.sock.sendall(DISCONNECT)
        except OSError:
            pass
        finally:
            self.sock.close()


def _pump(publisher: Publisher, control: _Control) -> float:
    """Publish until STOP and every PUBACK is in (or the drain times out); seconds taken."""
    sock = publisher.sock.fileno()
    started = time.monotonic()
    drain_until: float | None = None
    turn_at = started
    while True:
        rest = turn_at + MIN_TURN_S - time.monotonic()
        if rest > 0:
            time.sleep(rest)
        turn_at = time.monotonic()
        while not control.marks.empty():
            tag = control.marks.get()
            print(f"MARK {tag} {publisher.acked} {time.monotonic_ns()}", flush=True)
        if drain_until is None and control.stop.is_set():
            drain_until = time.monotonic() + DRAIN_TIMEOUT_S
        if drain_until is None:
            publisher.render(control.limit)
        elif publisher.acked >= publisher.sent or time.monotonic() > drain_until:
            return time.monotonic() - started
        if publisher.out:
            publisher.write()  # usually takes it all and saves a select
        readable, writable, _ = select.select(
            [sock, control.wake_fd], [sock] if publisher.out else [], [], TICK_S
        )
        if control.wake_fd in readable:
            control.woken()
        if sock in readable:
            publisher.read()
        if writable:
            publisher.write()
        publisher.keepalive(time.monotonic())


def run(args: argparse.Namespace) -> dict[str, Any]:
    connect = connect_packet(args.client_id, args.username, os.environ[TOKEN_ENV], KEEPALIVE_S)
    publisher = Publisher(open_link(args.host, args.port, connect), args)
    try:
        control = _Control()
        print("READY", flush=True)
        elapsed = _pump(publisher, control)
    finally:
        publisher.close()
    sent, acked = publisher.sent, publisher.acked
    if acked < sent:
        raise WorkerError(f"{sent - acked} of {sent} messages never acknowledged")
    return {"sent": sent, "acked": acked, "devices": args.devices, "seconds": round(elapsed, 2)}


def _window(text: str) -> int:
    value = int(text)
    if not 1 <= value < MAX_PACKET_ID:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_PACKET_ID - 1}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ingest_load",
        description=f"Simulated devices for the ingest benchmark; password in ${TOKEN_ENV}.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--prefix", required=True, help="device ids are <prefix>-dNNNN")
    parser.add_argument("--devices", type=_positive, default=500)
    parser.add_argument("--inflight", type=_window, default=1000, help="unacked QoS 1 window")
    parser.add_argument("--boot", default="bench001")
    parser.add_argument(
        "--start-s", type=float, required=True, help="epoch seconds of every device's seq 0"
    )
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return _parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if TOKEN_ENV not in os.environ:
        print(f"{TOKEN_ENV} is not set", file=sys.stderr)
        return 2
    try:
        result = run(args)
    except (WorkerError, OSError) as exc:
        print(f"load: {exc}", file=sys.stderr)
        return 1
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
