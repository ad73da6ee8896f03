"""One load-generator process of the ingest benchmark: many simulated devices, one paho link.

``python -m benchmarks.ingest_load --port P --prefix real-p0 --devices 500 ...`` with the
MQTT password in ``EMS_BENCH_TOKEN`` (a ``service`` token allowed to write
``ems/+/telemetry``, so one connection can speak for many devices, like a gateway).

Messages go round-robin over the devices, so every device's ``seq`` (and ``ts``, one second
per sample) increases by one per message; payloads are the contract's 3-phase sample,
pre-rendered once per device and filled in with ``%`` (no JSON encoder on the hot path).

Control is line-based, so the orchestrator can keep the pipeline saturated without letting
the broker's queue overflow (which would drop QoS 1 messages it already acknowledged):
- stdin ``LIMIT n``: publish until ``n`` messages in all have been sent;
- stdin ``MARK tag``: print ``MARK tag <acked> <monotonic_ns>``;
- stdin ``STOP`` (or EOF): stop sending, wait for every PUBACK, print ``RESULT <json>``.
Prints ``READY`` once connected.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.relay_worker import TOKEN_ENV, WorkerError, _connect

PHASES = ("A", "B", "C")
# The nine measurements of one phase; only energy_kwh moves (it must not decrease).
_PHASE = (
    b'"%s":{"voltage_rms":230.4,"current_rms":4.98,"power_watt":1102.5,"power_var":210.0,'
    b'"power_va":1147.4,"power_factor":0.961,"voltage_thd":1.8,"current_thd":6.2,'
    b'"energy_kwh":%%(e)s}'
)
DRAIN_TIMEOUT_S = 60.0


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
    """stdin commands, read by a thread and consumed by the publishing loop."""

    def __init__(self) -> None:
        self.limit = 0
        self.stop = threading.Event()
        self.marks: queue.SimpleQueue[str] = queue.SimpleQueue()
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
        self.stop.set()


def run(args: argparse.Namespace) -> dict[str, Any]:
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    client.username_pw_set(args.username, os.environ[TOKEN_ENV])
    client.max_inflight_messages_set(args.inflight)
    client.max_queued_messages_set(0)
    acked = 0

    def on_publish(_c: mqtt.Client, _u: Any, _mid: int, _rc: Any, _p: Any) -> None:
        nonlocal acked
        acked += 1

    client.on_publish = on_publish
    _connect(client, args.host, args.port)
    ids = device_ids(args.prefix, args.devices)
    topics = [f"ems/{d}/telemetry" for d in ids]
    body = template(args.boot)
    stamps = Timestamps(datetime.fromtimestamp(args.start_s, UTC))
    control = _Control()
    print("READY", flush=True)

    sent = 0
    count = len(ids)
    started = time.monotonic()
    while not control.stop.is_set():
        while not control.marks.empty():
            tag = control.marks.get()
            print(f"MARK {tag} {acked} {time.monotonic_ns()}", flush=True)
        limit = control.limit
        while sent < limit and sent - acked < args.inflight:
            seq, device = divmod(sent, count)
            payload = body % {b"ts": stamps[seq], b"seq": seq, b"e": b"%.3f" % (seq * 0.001)}
            client.publish(topics[device], payload, qos=1)
            sent += 1
        client.loop(timeout=0.005 if sent < limit else 0.05)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while acked < sent and time.monotonic() < deadline:
        client.loop(timeout=0.05)
    elapsed = time.monotonic() - started
    client.disconnect()
    if acked < sent:
        raise WorkerError(f"{sent - acked} of {sent} messages never acknowledged")
    return {"sent": sent, "acked": acked, "devices": count, "seconds": round(elapsed, 2)}


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
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--inflight", type=int, default=1000, help="unacked QoS 1 window")
    parser.add_argument("--boot", default="bench001")
    parser.add_argument(
        "--start-s", type=float, required=True, help="epoch seconds of every device's seq 0"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
