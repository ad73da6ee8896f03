"""CPU per message of the ingest's judging alone: ``Judge.judge`` from bytes to an Envelope.

``uv run python -m benchmarks.judge_bench [--seconds S]`` prints CPU µs per message (this
process's CPU time, so other work on the box disturbs it less than wall time would; best of
several rounds; no broker, no database) for the payloads the ingest meets:
- ``single``: the 3-phase sample exactly as ``benchmarks.ingest_load`` sends it;
- ``batch10``: a replayed backlog of ten such samples (µs per message, and per sample);
- ``units``: a sample in Wh and kW, which must be converted;
- ``malformed``: a sample with a string where a number belongs (quarantined).
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from benchmarks.ingest_load import template
from ems_platform.ingest.envelope import Incoming
from ems_platform.ingest.judge import Judge

TOPIC = "ems/bench-d0000/telemetry"
START = datetime(2026, 11, 22, 8, 15, 3, tzinfo=UTC)
ROUNDS = 5


def _stamp(seq: int) -> bytes:
    return (START + timedelta(seconds=seq)).strftime("%Y-%m-%dT%H:%M:%S.000Z").encode()


def single(seq: int = 0) -> bytes:
    """The load generator's bytes for one sample."""
    body = template("3f9c2a1e")
    return body % {b"ts": _stamp(seq), b"seq": seq, b"e": b"%.3f" % (10423.118 + seq / 1000)}


def batch(count: int) -> bytes:
    samples = b",".join(single(seq) for seq in range(count))
    return b'{"v":1,"samples":[' + samples + b"]}"


def units() -> bytes:
    data = json.loads(single())
    data["units"] = {"energy": "Wh", "power": "kW"}
    return json.dumps(data).encode()


def malformed() -> bytes:
    return single().replace(b'"voltage_rms":230.4', b'"voltage_rms":"230.4"', 1)


def per_message_us(run: Callable[[], object], seconds: float) -> float:
    """Best of ``ROUNDS`` rounds: the least disturbed by whatever else runs on the box."""
    calls = 1
    while True:  # calibrate: a round of about seconds / ROUNDS
        started = time.process_time()
        for _ in range(calls):
            run()
        took = time.process_time() - started
        if took >= seconds / ROUNDS / 4:
            break
        calls *= 2
    calls = max(1, int(calls * (seconds / ROUNDS) / took))
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(calls):
            run()
        best = min(best, (time.process_time() - started) / calls)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="time per payload kind")
    args = parser.parse_args()
    judge = Judge()
    cases = {
        "single": (single(), 1),
        "batch10": (batch(10), 10),
        "units": (units(), 1),
        "malformed": (malformed(), 1),
    }
    for name, (payload, samples) in cases.items():
        incoming = Incoming(TOPIC, payload, START)
        envelope = judge.judge(incoming)
        expect_rows = 0 if name == "malformed" else 3 * samples
        if len(envelope.rows) != expect_rows:
            raise SystemExit(f"{name}: {len(envelope.rows)} rows, expected {expect_rows}")
        us = per_message_us(functools.partial(judge.judge, incoming), args.seconds)
        extra = f"  ({us / samples:7.1f} µs/sample)" if samples > 1 else ""
        print(f"{name:10s} {len(payload):6d} B  {us:8.1f} µs/message{extra}")


if __name__ == "__main__":
    main()
