"""The printed table of an ingest benchmark run: one column per pipeline and broker.

A run with several platform workers names them in its column and gains rows for each
worker's share; a run with one prints the table it always did.
"""

from __future__ import annotations

from typing import Any

from benchmarks.report import _fmt, _get

_ROWS: list[tuple[str, list[str | int], str]] = [
    ("ingest workers ($share group)", ["workers"], ""),
    ("sustained rate (DB, committed)", ["window", "db_msgs_per_s"], "msg/s"),
    ("  rows committed", ["window", "db_rows_per_s"], "rows/s"),
    ("  rows committed per worker", ["window", "per_worker_rows"], "rows/s"),
    ("  publisher side (PUBACKed)", ["window", "publisher_acked_msgs_per_s"], "msg/s"),
    ("  window", ["window", "seconds"], "s"),
    ("  backlog at window start / end", ["window", "backlog"], "msg"),
    ("  avg batch / commit", ["window", "batch_commit"], ""),
    ("CPU: ingest process", ["window", "cpu_cores", "ingest"], "cores"),
    ("  per worker", ["window", "per_worker_cpu"], "cores"),
    ("CPU: broker", ["window", "cpu_cores", "broker"], "cores"),
    ("CPU: postgres", ["window", "cpu_cores", "postgres"], "cores"),
    ("CPU: load generators", ["window", "cpu_cores", "load"], "cores"),
    ("CPU: everything else on the box", ["window", "cpu_cores", "other"], "cores"),
    ("CPU: whole machine busy", ["window", "cpu_cores", "machine"], "cores"),
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
    return f"{name} ({kind}, {workers} workers)" if workers > 1 else f"{name} ({kind})"


def table(results: dict[str, dict[str, Any]]) -> str:
    columns: list[tuple[str, dict[str, Any]]] = []
    for kind, result in results.items():
        for name in ("real", "naive"):
            if name in result:
                _decorate(result[name])
                columns.append((_column(name, kind, result[name]), result[name]))
    several = any(phase.get("workers", 1) > 1 for _, phase in columns)
    header = ["", *(name for name, _ in columns), "unit"]
    lines = [header]
    for label, path, unit in _ROWS:
        if path in _WORKER_ROWS and not several:
            continue
        if several and path == ["window", "cpu_cores", "ingest"]:
            label = "CPU: ingest, all workers"
        lines.append([label, *(_fmt(_get(phase, path)) for _, phase in columns), unit])
    for kind, result in results.items():
        real = _get(result, ["real", "window", "db_msgs_per_s"])
        naive = _get(result, ["naive", "window", "db_msgs_per_s"])
        if real and naive:
            lines.append(
                [f"real / naive ({kind})", f"{real / naive:,.1f}x"] + [""] * (len(header) - 2)
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
    return "\n".join(out)
