"""Memory and CPU of a broker's whole process tree, read from /proc.

A broker may be more than one process (``ems broker --mosquitto`` keeps a supervisor next
to Mosquitto), and whatever it costs per session is the sum, so every figure here covers
the process and all its descendants.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcMemory:
    pid: int
    name: str
    rss_kib: int
    pss_kib: int


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    task_dir = _PROC / str(pid) / "task"
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return kids
    for task in tasks:
        try:
            kids.extend(int(k) for k in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return kids


def process_tree(pid: int) -> list[int]:
    """`pid` and its living descendants, parents first."""
    seen: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop(0)
        if current in seen or not (_PROC / str(current)).exists():
            continue
        seen.append(current)
        todo.extend(_children(current))
    return seen


def peak_rss_kib(pid: int) -> int:
    """The process's own high-water mark of resident memory (VmHWM), KiB."""
    return _status_field(pid, "VmHWM")


def _status_field(pid: int, field: str) -> int:
    for line in (_PROC / str(pid) / "status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _pss_kib(pid: int) -> int:
    try:
        text = (_PROC / str(pid) / "smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def tree_memory(pid: int) -> list[ProcMemory]:
    """RSS and PSS of every process in the tree (processes that vanish meanwhile are skipped)."""
    found: list[ProcMemory] = []
    for member in process_tree(pid):
        try:
            name = (_PROC / str(member) / "comm").read_text().strip()
            rss = _status_field(member, "VmRSS")
        except OSError:
            continue
        found.append(ProcMemory(member, name, rss, _pss_kib(member)))
    return found


def tree_rss_kib(pid: int) -> int:
    return sum(p.rss_kib for p in tree_memory(pid))


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the tree's living processes."""
    total = 0
    for member in process_tree(pid):
        try:
            stat = (_PROC / str(member) / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / _CLOCK_TICKS


async def settled_rss_kib(
    pid: int, *, interval: float = 0.5, tolerance_kib: int = 256, max_wait: float = 15.0
) -> int:
    """The tree's RSS once three readings in a row agree within `tolerance_kib`.

    Right after a burst of connections the allocator and the kernel are still catching up;
    reading at once would charge or miss memory that is only in flight. `max_wait` bounds
    the wait; the last reading is returned either way.
    """
    deadline = time.monotonic() + max_wait
    readings = [tree_rss_kib(pid)]
    while time.monotonic() < deadline:
        await asyncio.sleep(interval)
        readings.append(tree_rss_kib(pid))
        last = readings[-3:]
        if len(last) == 3 and max(last) - min(last) <= tolerance_kib:
            break
    return readings[-1]
