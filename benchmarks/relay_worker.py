"""One side of the QoS 1 relay measurement, run as its own process (paho-mqtt).

``python -m benchmarks.relay_worker sub|pub --port P --topic T ...`` with the MQTT password
in ``EMS_BENCH_TOKEN`` (never on the command line, where ``ps`` shows it). The subscriber
prints ``READY`` once its subscription is granted, then one ``RESULT <json>`` line; the
publisher prints ``RESULT <json>`` once every PUBACK is in.

The publisher keeps at most ``--inflight`` messages unacknowledged and stamps each payload
with CLOCK_MONOTONIC (one clock for every process on the host) just before handing it to
paho, so the subscriber's latency is broker relay plus delivery, not time spent queued
inside the publishing client.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

TOKEN_ENV = "EMS_BENCH_TOKEN"
CONNECT_TIMEOUT_S = 15.0
# After the publisher is done, a subscriber still missing messages waits this long for
# stragglers before it reports them as lost.
QUIET_AFTER_PUBLISHER_S = 3.0


class WorkerError(RuntimeError):
    """The worker could not connect, subscribe or finish."""


# Fixed-width stamp at a fixed offset: the subscriber slices it instead of parsing JSON,
# so a Python subscriber costs the relay as little as it can.
_HEAD = b'{"v":1,"seq":%10d,"sent_ns":%20d,"pad":"'
_SEQ = slice(13, 23)
_SENT = slice(34, 54)


def make_payload(seq: int, sent_ns: int, size: int) -> bytes:
    head = _HEAD % (seq, sent_ns)
    tail = b'"}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


def read_stamp(payload: bytes | bytearray) -> tuple[int, int]:
    return int(payload[_SEQ]), int(payload[_SENT])


def _client(client_id: str, username: str) -> mqtt.Client:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    client.username_pw_set(username, os.environ[TOKEN_ENV])
    return client


def _connect(client: mqtt.Client, host: str, port: int) -> None:
    refused: list[str] = []
    connected = False

    def on_connect(_c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any) -> None:
        nonlocal connected
        if rc.is_failure:
            refused.append(str(rc))
        connected = True

    client.on_connect = on_connect
    client.connect(host, port, keepalive=60)
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while not connected and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    if not connected or refused:
        raise WorkerError(f"connect to {host}:{port} failed: {refused or 'timeout'}")


@dataclass
class _Received:
    first_ns: int = 0
    last_ns: int = 0
    latencies_ns: list[int] = field(default_factory=list)
    seen: set[int] = field(default_factory=set)
    duplicates: int = 0


def _percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index] / 1e6


def _stdin_closed() -> threading.Event:
    """Set once the orchestrator closes our stdin, which it does when the publisher exits."""
    closed = threading.Event()

    def wait() -> None:
        sys.stdin.read()
        closed.set()

    threading.Thread(target=wait, name="stdin", daemon=True).start()
    return closed


# Both workers drive paho's loop in their one thread: a second (network) thread would
# make every message cross the GIL twice, and on two cores the clients, not the broker,
# would then set the rate.


def run_subscriber(args: argparse.Namespace) -> dict[str, Any]:
    client = _client(args.client_id, args.username)
    got = _Received()

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic_ns()
        seq, sent_ns = read_stamp(message.payload)
        if seq in got.seen:
            got.duplicates += 1
            return
        got.seen.add(seq)
        got.latencies_ns.append(now - sent_ns)
        got.first_ns = got.first_ns or now
        got.last_ns = now

    granted = False

    def on_subscribe(*_a: Any) -> None:
        nonlocal granted
        granted = True

    client.on_message = on_message
    client.on_subscribe = on_subscribe
    _connect(client, args.host, args.port)
    client.subscribe(args.topic, qos=1)
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while not granted and time.monotonic() < deadline:
        client.loop(timeout=0.1)
    if not granted:
        raise WorkerError("no SUBACK")
    print("READY", flush=True)

    publisher_done = _stdin_closed()
    deadline = time.monotonic() + args.time_cap
    seen_count, quiet_since = -1, time.monotonic()
    while len(got.seen) < args.messages and time.monotonic() < deadline:
        client.loop(timeout=0.05)
        if len(got.seen) != seen_count:
            seen_count, quiet_since = len(got.seen), time.monotonic()
        elif publisher_done.is_set() and time.monotonic() - quiet_since > QUIET_AFTER_PUBLISHER_S:
            break
    client.disconnect()

    received = len(got.seen)
    span_s = (got.last_ns - got.first_ns) / 1e9
    latencies = sorted(got.latencies_ns)
    return {
        "received": received,
        "duplicates": got.duplicates,
        "lost": args.messages - received,
        "span_s": round(span_s, 3),
        "rate_msgs_per_s": round((received - 1) / span_s, 1) if span_s > 0 else None,
        "latency_ms": {
            "p50": round(_percentile(latencies, 0.50), 2),
            "p95": round(_percentile(latencies, 0.95), 2),
            "p99": round(_percentile(latencies, 0.99), 2),
            "max": round(_percentile(latencies, 1.0), 2),
        },
        "timed_out": received < args.messages and time.monotonic() >= deadline,
    }


def run_publisher(args: argparse.Namespace) -> dict[str, Any]:
    client = _client(args.client_id, args.username)
    client.max_inflight_messages_set(args.inflight)
    acked = 0

    def on_publish(_c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        nonlocal acked
        acked += 1

    client.on_publish = on_publish
    _connect(client, args.host, args.port)
    deadline = time.monotonic() + args.time_cap
    start = time.monotonic()
    sent = 0
    while acked < args.messages and time.monotonic() < deadline:
        # Keep the window full; each message is stamped as it goes onto the wire.
        while sent < args.messages and sent - acked < args.inflight:
            client.publish(args.topic, make_payload(sent, time.monotonic_ns(), args.size), qos=1)
            sent += 1
        client.loop(timeout=0.05)
    elapsed = time.monotonic() - start
    client.disconnect()
    return {
        "sent": sent,
        "acked": acked,
        "pub_seconds": round(elapsed, 3),
        "pub_msgs_per_s": round(acked / elapsed, 1) if elapsed > 0 else None,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.relay_worker",
        description=f"One side of the QoS 1 relay benchmark; the password is in ${TOKEN_ENV}.",
    )
    parser.add_argument("role", choices=["pub", "sub"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--username", required=True)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=600, help="payload bytes")
    parser.add_argument("--inflight", type=int, default=20, help="publisher's unacked window")
    parser.add_argument("--time-cap", type=float, default=60.0, help="seconds, at most")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if TOKEN_ENV not in os.environ:
        print(f"{TOKEN_ENV} is not set", file=sys.stderr)
        return 2
    try:
        result = run_subscriber(args) if args.role == "sub" else run_publisher(args)
    except (WorkerError, OSError) as exc:
        print(f"{args.role}: {exc}", file=sys.stderr)
        return 1
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
