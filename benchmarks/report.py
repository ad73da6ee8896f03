"""The printed table and the JSON result of a broker benchmark run."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Figures of the table: (label, how to read it from one broker's result, unit).
_Row = tuple[str, list[str | int], str]


def _get(result: dict[str, Any], path: list[str | int]) -> Any:
    value: Any = result
    for key in path:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _rows(levels: list[int]) -> list[_Row]:
    rows: list[_Row] = [
        ("QoS 1 relay rate", ["relay", "rate_msgs_per_s"], "msg/s"),
        ("  received / sent", ["relay", "received_of_sent"], ""),
        ("  latency p50", ["relay", "latency_ms", "p50"], "ms"),
        ("  latency p95", ["relay", "latency_ms", "p95"], "ms"),
        ("  latency p99", ["relay", "latency_ms", "p99"], "ms"),
        ("  broker CPU busy", ["relay", "broker_cpu_per_wall_s"], "cores"),
        ("  broker CPU per message", ["relay", "broker_cpu_us_per_msg"], "µs"),
        ("baseline RSS", ["sessions", "baseline_rss_kib"], "KiB"),
    ]
    for i, level in enumerate(levels):
        rows += [
            (f"RSS with {level:,} sessions", ["sessions", "levels", i, "rss_kib"], "KiB"),
            (f"  per session @ {level:,}", ["sessions", "levels", i, "kib_per_session"], "KiB"),
            ("  sessions alive", ["sessions", "levels", i, "alive"], ""),
            (
                f"  connect time (+{_batch(levels, i):,})",
                ["sessions", "levels", i, "batch_connect_seconds"],
                "s",
            ),
        ]
    return rows


def _batch(levels: list[int], i: int) -> int:
    return levels[i] - (levels[i - 1] if i else 0)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(a: Any, b: Any) -> str:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return f"{a / b:.2f}x"
    return "-"


def table(results: dict[str, dict[str, Any]], levels: list[int]) -> str:
    """One column per broker; a ratio column for Mosquitto (either flavour) over amqtt."""
    for result in results.values():
        relay = result.get("relay") or {}
        if "received" in relay:
            relay["received_of_sent"] = f"{relay['received']:,}/{relay['messages']:,}"
    kinds = list(results)
    ratio_of = next((k for k in kinds if k.startswith("mosquitto")), None)
    show_ratio = "amqtt" in results and ratio_of is not None
    header = ["", *kinds, "unit"] + ([f"{ratio_of}/amqtt"] if show_ratio else [])
    lines = [header]
    for label, path, unit in _rows(levels):
        values = [_get(results[k], path) for k in kinds]
        line = [label, *(_fmt(v) for v in values), unit]
        if show_ratio and ratio_of is not None:
            line.append(
                _ratio(_get(results[ratio_of], path), _get(results["amqtt"], path))
                if unit and unit != "cores"
                else ""
            )
        lines.append(line)
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = []
    for n, row in enumerate(lines):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def run_header(benchmark: str, started: float) -> dict[str, Any]:
    """What every result file starts with: which benchmark, when, how long, on what."""
    return {
        "benchmark": benchmark,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            # Which build: a distribution's (PGO+LTO) and a plain source build of the same
            # version differ by about an eighth in the ingest's CPU (README, "The interpreter").
            "python_executable": os.path.realpath(sys.executable),
            "kernel": platform.release(),
        },
    }
