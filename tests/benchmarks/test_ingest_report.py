"""The ingest benchmark's ratio: against the faster naive window, flagged when that window
was disturbed (pure logic over a results dict shaped like the benchmark's JSON)."""

from __future__ import annotations

import re
from typing import Any

from benchmarks.ingest_report import DISTURBED_CORES, naive_ratio, table


def window(rate: float, other: float = 0.0, steal: float = 0.0) -> dict[str, Any]:
    return {"window": {"db_msgs_per_s": rate, "cpu_cores": {"other": other, "steal": steal}}}


def test_the_ratio_is_taken_against_the_faster_naive_window() -> None:
    result = {"real": window(12_000), "naive": window(300, steal=0.3), "naive_after": window(400)}
    assert naive_ratio(result) == {
        "ratio": 30.0,
        "naive_window": "naive_after",
        "naive_disturbance_cores": 0.0,
        "naive_disturbed": False,
    }


def test_a_disturbed_faster_window_is_flagged_and_named_under_the_table() -> None:
    busy = DISTURBED_CORES + 0.05
    result = {
        "real": window(12_000),
        "naive": window(250, other=0.01, steal=busy),
        "naive_after": window(200),
    }
    ratio = naive_ratio(result)
    assert ratio is not None
    assert ratio["naive_window"] == "naive"
    assert ratio["ratio"] == 48.0 and ratio["naive_disturbed"]
    printed = table({"mosquitto": result})
    assert re.search(r"^real / faster naive \(mosquitto\) +48\.0x$", printed, re.MULTILINE)
    assert f"{busy + 0.01:.2f} cores taken by other processes or other guests" in printed


def test_no_ratio_without_both_pipelines() -> None:
    assert naive_ratio({"real": window(12_000)}) is None
    assert naive_ratio({"naive": window(300)}) is None
    assert naive_ratio({"real": window(12_000), "naive": window(300)}) == {
        "ratio": 40.0,
        "naive_window": "naive",
        "naive_disturbance_cores": 0.0,
        "naive_disturbed": False,
    }
