"""The printed table of an ingest benchmark run: one column per pipeline and broker.

A run with several platform workers names them in its column and gains rows for each
worker's share; a run with one prints the table it always did.
"""

from __future__ import annotations

from typing import Any

from benchmarks.ingest_db import SLICE_S
from benchmarks.report import _fmt, _get

_ROWS: list[tuple[str, list[str | int], str]] = [
    ("ingest workers ($share group)", ["workers"], ""),
    ("sustained rate (DB, committed)", ["window", "db_msgs_per_s"], "msg/s"),
    ("  rows committed", ["window", "db_rows_per_s"], "rows/s"),
    (f"  by {SLICE_S:.0f} s slice: first / min / max / last", ["window", "slices"], "msg/s"),
    ("  rows committed per worker", ["window", "per_worker_rows"], "rows/s"),
    ("  publisher side (PUBACKed)", ["window", "publisher_acked_msgs_per_s"], "msg/s"),
    ("  window", ["window", "seconds"], "s"),
    ("  backlog at window start / end", ["window", "backlog"], "msg"),
    ("  avg batch / commit", ["window", "batch_commit"], ""),
    ("  WAL written", ["window", "wal_mib_per_s"], "MiB/s"),
    ("  WAL per message", ["window", "wal_bytes_per_msg"], "bytes"),
    ("CPU: ingest process", ["window", "cpu_cores", "ingest"], "cores"),
    ("  per worker", ["window", "per_worker_cpu"], "cores"),
    ("CPU: broker", ["window", "cpu_cores", "broker"], "cores"),
    ("CPU: postgres", ["window", "cpu_cores", "postgres"], "cores"),
    ("CPU: load generators", ["window", "cpu_cores", "load"], "cores"),
    ("CPU: everything else on the box", ["window", "cpu_cores", "other"], "cores"),
    ("CPU: whole machine busy", ["window", "cpu_cores", "machine"], "cores"),
    ("CPU: stolen by the hypervisor", ["window", "cpu_cores", "steal"], "cores"),
    ("ingest CPU per message", ["window", "cpu_us_per_msg", "ingest"], "µs"),
    ("  => ceiling at one full core", ["window", "ingest_one_core_ceiling_msgs_per_s"], "msg/s"),
    ("ingest memory: RSS at end / peak", ["window", "ingest_memory"], "MiB"),
    ("messages published (all)", ["published", "acked"], ""),
    ("count check: rows stored/expected", ["count_check", "stored_of_expected"], ""),
    ("  duplicates (raw_events)", ["count_check", "duplicates"], ""),
    ("  drained after stop", ["drain_seconds"], "s"),
    ("  count check", ["count_check", "verdict"], ""),
]


#: Rows only a run with several workers prints.
_WORKER_ROWS = (["workers"], ["window", "per_worker_rows"], ["window", "per_worker_cpu"])


def _decorate(phase: dict[str, Any]) -> None:
    window = phase.get("window") or {}
    if "backlog_msgs_at_start" in window:
        window["backlog"] = (
            f"{window['backlog_msgs_at_start']:,} / {window.get('backlog_msgs_at_end', 0):,}"
        )
    slices = window.get("slice_msgs_per_s")
    if slices:
        window["slices"] = " / ".join(
            f"{v:,.0f}" for v in (slices[0], min(slices), max(slices), slices[-1])
        )
    if "avg_batch_rows" in window:
        window["batch_commit"] = (
            f"{window['avg_batch_rows']:,.0f} rows / {window['avg_commit_s'] * 1000:,.1f} ms"
        )
    if "ingest_rss_mib" in window:
        window["ingest_memory"] = (
            f"{window['ingest_rss_mib']:,.0f} / {window.get('ingest_peak_rss_mib', 0):,.0f}"
        )
    workers = window.get("per_worker") or []
    if workers:
        window["per_worker_cpu"] = " / ".join(f"{w['cpu_cores']:.2f}" for w in workers)
        window["per_worker_rows"] = " / ".join(f"{w['rows_stored_per_s']:,.0f}" for w in workers)
    check = phase.get("count_check")
    if check:
        check["stored_of_expected"] = f"{check['rows_stored']:,}/{check['rows_expected']:,}"
        check["verdict"] = "OK" if check["ok"] else "FAIL"


def _column(name: str, kind: str, phase: dict[str, Any]) -> str:
    workers = phase.get("workers", 1)
    if name == "naive_after":
        return f"naive again ({kind})"
    return f"{name} ({kind}, {workers} workers)" if workers > 1 else f"{name} ({kind})"


#: Cores taken by something other than the pipelines (other processes, other guests of the
#: host) above which a naive window is called disturbed: its rate, and so the ratio, is off.
DISTURBED_CORES = 0.10


def naive_ratio(result: dict[str, Any]) -> dict[str, Any] | None:
    """The real rate over the faster of the naive windows (before and after it), and how
    much else ran on the box during that naive window."""
    real = _get(result, ["real", "window", "db_msgs_per_s"])
    naive = [
        (rate, name)
        for name in ("naive", "naive_after")
        if (rate := _get(result, [name, "window", "db_msgs_per_s"]))
    ]
    if not real or not naive:
        return None
    rate, name = max(naive)
    cores = _get(result, [name, "window", "cpu_cores"]) or {}
    disturbance = round(cores.get("other", 0.0) + cores.get("steal", 0.0), 2)
    return {
        "ratio": round(real / rate, 1),
        "naive_window": name,
        "naive_disturbance_cores": disturbance,
        "naive_disturbed": disturbance > DISTURBED_CORES,
    }


def table(results: dict[str, dict[str, Any]]) -> str:
    columns: list[tuple[str, dict[str, Any]]] = []
    for kind, result in results.items():
        for name in ("real", "naive", "naive_after"):
            if name in result:
                _decorate(result[name])
                columns.append((_column(name, kind, result[name]), result[name]))
    several = any(phase.get("workers", 1) > 1 for _, phase in columns)
    header = ["", *(name for name, _ in columns), "unit"]
    lines = [header]
    notes: list[str] = []
    for label, path, unit in _ROWS:
        if path in _WORKER_ROWS and not several:
            continue
        if several and path == ["window", "cpu_cores", "ingest"]:
            label = "CPU: ingest, all workers"
        lines.append([label, *(_fmt(_get(phase, path)) for _, phase in columns), unit])
    for kind, result in results.items():
        ratio = naive_ratio(result)
        if ratio is not None:
            lines.append(
                [f"real / faster naive ({kind})", f"{ratio['ratio']:,.1f}x"]
                + [""] * (len(header) - 2)
            )
            if ratio["naive_disturbed"]:
                notes.append(
                    f"{kind}: the faster naive window had {ratio['naive_disturbance_cores']:.2f}"
                    " cores taken by other processes or other guests (steal): its rate is"
                    " low and the ratio flattering"
                )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = []
    for n, row in enumerate(lines):
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("-" * len(out[0]))
    return "\n".join(out + notes)
