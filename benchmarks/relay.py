"""QoS 1 relay: one publisher process -> broker -> one subscriber process.

The publisher is a device (``bench-pub``, its own token, publishing to its telemetry
topic); the subscriber is a service token reading that topic, as the platform's ingest
does. Rate is measured at the subscriber, between its first and last receipt.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.bench_db import SUBSCRIBER_NAME, Credentials
from benchmarks.brokers import BrokerProcess
from benchmarks.procmem import tree_cpu_seconds

REPO_ROOT = Path(__file__).resolve().parent.parent
# Beyond the worker's own time cap: start-up, connect and the subscriber's quiet period.
_SLACK_S = 30.0


class RelayError(RuntimeError):
    """A relay worker failed or did not report."""


@dataclass(frozen=True)
class RelayConfig:
    messages: int = 20_000
    size: int = 600
    inflight: int = 20
    time_cap: float = 60.0


async def _spawn(role: str, broker: BrokerProcess, token: str, extra: list[str]) -> Any:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "benchmarks.relay_worker",
        role,
        "--host",
        broker.host,
        "--port",
        str(broker.port),
        *extra,
        env={**os.environ, "EMS_BENCH_TOKEN": token},
        cwd=REPO_ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _result(role: str, out: bytes, err: bytes) -> dict[str, Any]:
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("RESULT "):
            parsed: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
            return parsed
    raise RelayError(f"{role} gave no result: {err.decode(errors='replace')[-2000:]}")


async def _finish(proc: Any, role: str, timeout: float) -> dict[str, Any]:
    try:
        out, err = await asyncio.wait_for(proc.communicate(b""), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise RelayError(f"{role} did not finish in {timeout:.0f} s") from None
    return _result(role, out, err)


async def measure_relay(
    broker: BrokerProcess, credentials: Credentials, config: RelayConfig
) -> dict[str, Any]:
    publisher = credentials.publisher
    topic = f"ems/{publisher.device_id}/telemetry"
    common = [
        "--topic",
        topic,
        "--messages",
        str(config.messages),
        "--size",
        str(config.size),
        "--time-cap",
        str(config.time_cap),
    ]
    sub = await _spawn(
        "sub",
        broker,
        credentials.subscriber_token,
        [*common, "--client-id", SUBSCRIBER_NAME, "--username", SUBSCRIBER_NAME],
    )
    try:
        assert sub.stdout is not None
        ready = await asyncio.wait_for(sub.stdout.readline(), _SLACK_S)
        if ready.strip() != b"READY":
            raise RelayError(f"subscriber not ready: {ready!r}")
        cpu_before = tree_cpu_seconds(broker.pid)
        pub = await _spawn(
            "pub",
            broker,
            publisher.token,
            [
                *common,
                "--client-id",
                publisher.device_id,
                "--username",
                publisher.device_id,
                "--inflight",
                str(config.inflight),
            ],
        )
        pub_result = await _finish(pub, "publisher", config.time_cap + _SLACK_S)
        sub_result = await _finish(sub, "subscriber", config.time_cap + _SLACK_S)
        cpu_used = tree_cpu_seconds(broker.pid) - cpu_before
    finally:
        if sub.returncode is None:
            sub.kill()
            await sub.wait()
    span = sub_result["span_s"] or 0.0
    return {
        "messages": config.messages,
        "payload_bytes": config.size,
        "inflight": config.inflight,
        **sub_result,
        "publisher": pub_result,
        "broker_cpu_s": round(cpu_used, 2),
        "broker_cpu_per_wall_s": round(cpu_used / span, 2) if span else None,
        # Independent of how fast the Python clients are: what each message costs the broker.
        "broker_cpu_us_per_msg": round(cpu_used / sub_result["received"] * 1e6, 1)
        if sub_result["received"]
        else None,
    }
