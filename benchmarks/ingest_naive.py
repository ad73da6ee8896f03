"""The naive ingest the benchmark compares against: what a first attempt usually looks like.

``python -m benchmarks.ingest_naive --port P --dsn D`` (MQTT password in
``EMS_BENCH_TOKEN``): one paho subscriber on ``ems/+/telemetry`` at QoS 1 with paho's
automatic PUBACK, ``json.loads`` of each payload and one autocommitted ``INSERT`` per phase
row (asyncpg, prepared statement, one connection). No validation, no audit row, no deltas,
so it does *less* work per message than the platform; the ratio is conservative.

Prints ``READY`` once subscribed; stops on stdin EOF and prints ``RESULT <json>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.relay_worker import CONNECT_TIMEOUT_S, TOKEN_ENV, WorkerError, _connect

_INSERT = """
INSERT INTO energy_readings (device_id, phase, ts, voltage_rms, current_rms, power_watt,
    power_var, power_va, power_factor, voltage_thd, current_thd, energy_kwh, seq, boot,
    received_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (device_id, phase, ts) DO NOTHING
"""
_FIELDS = (
    "voltage_rms",
    "current_rms",
    "power_watt",
    "power_var",
    "power_va",
    "power_factor",
    "voltage_thd",
    "current_thd",
    "energy_kwh",
)


def _rows(topic: str, payload: bytes | bytearray) -> list[tuple[Any, ...]]:
    sample = json.loads(payload)
    device_id = topic.split("/")[1]
    ts = datetime.fromisoformat(sample["ts"])
    now = datetime.now(UTC)
    return [
        (device_id, phase, ts, *(values[f] for f in _FIELDS), sample["seq"], sample["boot"], now)
        for phase, values in sample["phases"].items()
    ]


def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.new_event_loop()
    conn = loop.run_until_complete(asyncpg.connect(args.dsn))
    insert = loop.run_until_complete(conn.prepare(_INSERT))
    counts = {"messages": 0, "rows": 0, "errors": 0}

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        # paho sends the PUBACK when this returns, whatever happened here.
        try:
            for row in _rows(message.topic, message.payload):
                loop.run_until_complete(insert.fetch(*row))
                counts["rows"] += 1
        except (ValueError, KeyError, TypeError, asyncpg.PostgresError):
            counts["errors"] += 1
        counts["messages"] += 1

    granted = threading.Event()
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=args.client_id,
        clean_session=True,
        protocol=mqtt.MQTTv311,
    )
    client.username_pw_set(args.username, os.environ[TOKEN_ENV])
    client.on_message = on_message
    client.on_subscribe = lambda *_a: granted.set()
    _connect(client, args.host, args.port)
    client.subscribe("ems/+/telemetry", qos=1)
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while not granted.is_set():
        client.loop(timeout=0.1)
        if time.monotonic() > deadline:
            raise WorkerError("no SUBACK")
    print("READY", flush=True)

    stop = threading.Event()

    def wait_for_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_for_eof, name="stdin", daemon=True).start()
    while not stop.is_set():
        client.loop(timeout=0.05)
    client.disconnect()
    loop.run_until_complete(conn.close())
    loop.close()
    return counts


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ingest_naive",
        description=(
            "Naive ingest: paho auto-ack, json.loads, one autocommitted INSERT per row. "
            f"MQTT password in ${TOKEN_ENV}."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dsn", required=True, help="PostgreSQL DSN (no password in it)")
    parser.add_argument("--client-id", default="bench-naive-ingest")
    parser.add_argument("--username", default="bench-naive-ingest")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if TOKEN_ENV not in os.environ:
        print(f"{TOKEN_ENV} is not set", file=sys.stderr)
        return 2
    try:
        result = run(args)
    except (WorkerError, OSError, asyncpg.PostgresError) as exc:
        print(f"naive: {exc}", file=sys.stderr)
        return 1
    print("RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
