"""Where the ingest spends its CPU: py-spy samples grouped into stages.

``py-spy record --format raw`` writes collapsed stacks (``frame;frame;... count``, root
first). Each sample goes to the stage of its innermost frame that names one, so time in
``json.loads`` called by the contract parser counts as JSON parsing, and asyncpg's Cython
(invisible to py-spy without ``--native``) counts as the pg_store line that called it.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# (stage, substrings of a frame "function (path:line)"); the first stage whose substring
# matches the innermost matching frame wins, so order only matters within one frame. The
# last entry, the event loop, is the fallback.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("JSON parse", ("json/decoder.py", "json/__init__.py", "load_json_object")),
    (
        "validation (msgspec, pydantic)",
        ("msgspec/", "pydantic/", "pydantic_core", "model_validate", "ems_contract/"),
    ),
    ("quality planning (deltas, flags)", ("ingest/quality", "ingest/deltas.py")),
    ("judge (rows, envelopes)", ("ingest/judge.py", "ingest/envelope.py")),
    ("DB write (COPY, INSERT, commit; asyncpg)", ("ingest/pg_store.py", "asyncpg/")),
    ("batching + ack bookkeeping", ("ingest/batcher.py", "ingest/acks.py")),
    (
        "MQTT (paho, aiomqtt, flow control)",
        ("paho/", "aiomqtt/", "ingest/flow_client.py", "ingest/source.py"),
    ),
    ("metrics", ("prometheus_client/", "ingest/metrics.py")),
    ("logging", ("logging/",)),
    ("asyncio event loop", ("asyncio/", "selectors.py", "uvloop")),
)
OTHER = "other"


def py_spy() -> str | None:
    """The py-spy next to our interpreter (uv's venv), or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def stage_of(stack: list[str]) -> str:
    """The stage of the innermost frame naming one; the event loop (in every stack) only
    when nothing else does, so socket writes count for whoever wrote."""
    *specific, (loop_stage, loop_needles) = STAGES
    for frame in reversed(stack):
        for stage, needles in specific:
            if any(n in frame for n in needles):
                return stage
    if any(n in frame for frame in stack for n in loop_needles):
        return loop_stage
    return OTHER


def _leaf(frame: str) -> str:
    # "loads (json/__init__.py:346)" -> "loads (json/__init__.py)": one row per function.
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    short = "/".join(path.split("/")[-2:])
    return f"{name} ({short})"


def summarize(raw: str, top: int = 15) -> dict[str, Any]:
    stages: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        stack = stack_text.split(";")
        total += count
        stages[stage_of(stack)] += count
        leaves[_leaf(stack[-1])] += count
    share = (lambda n: round(100 * n / total, 1)) if total else (lambda n: 0.0)
    return {
        "samples": total,
        "stages_percent": {s: share(n) for s, n in stages.most_common()},
        "top_functions_self_percent": {f: share(n) for f, n in leaves.most_common(top)},
    }


async def record(pid: int, seconds: float, out: Path, rate: int = 100) -> dict[str, Any]:
    """Sample `pid` for `seconds` (non-blocking: the ingest is not paused to be read)."""
    exe = py_spy()
    if exe is None:
        return {"error": "py-spy not installed (uv sync --group dev)"}
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        exe,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--nonblocking",
        "--output",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await proc.communicate()
    if proc.returncode != 0 or not out.exists():
        text = output.decode(errors="replace")[-1500:]
        logger.warning("py-spy failed (%s): %s", proc.returncode, text)
        return {"error": f"py-spy exited {proc.returncode}: {text}"}
    summary = summarize(out.read_text(errors="replace"))
    summary["seconds"] = seconds
    summary["rate_hz"] = rate
    summary["collapsed_stacks"] = str(out)
    # Samples land only while the thread runs Python (idle is left out), so this is the
    # share of the window the ingest's main thread was busy.
    summary["busy_fraction"] = round(summary["samples"] / (seconds * rate), 2)
    return summary


async def record_all(pids: list[int], seconds: float, out: Path) -> dict[str, Any]:
    """Sample every worker at once; one worker is :func:`record` writing `out` unchanged.

    Several workers each get their own file (``<out stem>_w<i><suffix>``), and the summary
    pools their samples (stages are shares of all the workers' busy time), with each
    worker's busy fraction beside it.
    """
    if len(pids) == 1:
        return await record(pids[0], seconds, out)
    outs = [out.with_name(f"{out.stem}_w{i}{out.suffix}") for i in range(len(pids))]
    each = await asyncio.gather(
        *(record(pid, seconds, path) for pid, path in zip(pids, outs, strict=True))
    )
    errors = [f"worker {i}: {one['error']}" for i, one in enumerate(each) if "error" in one]
    if errors:
        return {"error": "; ".join(errors)}
    pooled = "\n".join(path.read_text(errors="replace") for path in outs)
    summary = summarize(pooled)
    summary["seconds"] = seconds
    summary["rate_hz"] = each[0]["rate_hz"]
    summary["collapsed_stacks"] = [str(path) for path in outs]
    summary["workers"] = len(pids)
    summary["busy_fraction_per_worker"] = [one["busy_fraction"] for one in each]
    return summary
