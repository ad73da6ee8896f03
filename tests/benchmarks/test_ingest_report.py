"""The ingest benchmark's ratio: against the faster naive window, flagged when that window
was disturbed (pure logic over a results dict shaped like the benchmark's JSON)."""

from __future__ import annotations

import re
from typing import Any

from benchmarks.ingest_db import slice_rates
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


def test_slices_give_the_rate_of_each_slice_of_the_window() -> None:
    # 300 rows/s for 30 s, then 150 rows/s: samples every 0.25 s, as the feeder takes them.
    samples = []
    for n in range(0, 241):
        at = 100.0 + n * 0.25
        rows = 300 * min(at - 100.0, 30.0) + 150 * max(at - 130.0, 0.0)
        samples.append((at, round(rows)))
    assert slice_rates(samples, 100.0, 160.0, width=15.0) == [300.0, 300.0, 150.0, 150.0]
    # A slice that runs past the window's end or past the last sample is left out.
    assert slice_rates(samples, 100.0, 159.0, width=15.0) == [300.0, 300.0, 150.0]
    assert slice_rates(samples, 130.0, 200.0, width=15.0) == [150.0, 150.0]


def test_slices_interpolate_between_sparse_samples() -> None:
    samples = [(0.0, 0), (10.0, 1000), (20.0, 3000)]
    assert slice_rates(samples, 5.0, 15.0, width=5.0) == [100.0, 200.0]


def test_the_table_shows_first_min_max_and_last_slice() -> None:
    result = {"real": window(12_000)}
    result["real"]["window"]["slice_msgs_per_s"] = [12_500, 11_000, 12_900, 11_800]
    printed = table({"mosquitto": result})
    assert re.search(
        r"^  by 15 s slice: first / min / max / last +12,500 / 11,000 / 12,900 / 11,800 +msg/s$",
        printed,
        re.MULTILINE,
    )
