"""The SQLite outbox: order, batch limits, deletion, restart survival, pruning, disk bound."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ems_contract import MAX_BATCH_BYTES, MAX_BATCH_SAMPLES, parse_telemetry
from ems_device.db import DeviceDb
from ems_device.outbox import Outbox, batch_payload


def sample(seq: int, pad: int = 0) -> bytes:
    reading = {
        "voltage_rms": 230.0,
        "current_rms": 1.0,
        "power_watt": 200.0,
        "power_var": 10.0,
        "power_va": 230.0,
        "power_factor": 0.9,
        "voltage_thd": 1.0,
        "current_thd": 2.0 + pad,
        "energy_kwh": 1.0 + seq,
    }
    body = {"v": 1, "ts": 1_790_000_000_000 + seq * 1000, "seq": seq, "boot": "b1"}
    body["phases"] = {"A": reading, "B": reading, "C": reading}
    return json.dumps(body).encode()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DeviceDb]:
    database = DeviceDb(tmp_path / "outbox.db")
    yield database
    database.close()


def test_database_uses_wal(db: DeviceDb) -> None:
    assert db.query("PRAGMA journal_mode")[0][0] == "wal"


def test_rows_come_back_oldest_first_and_leave_only_when_deleted(db: DeviceDb) -> None:
    outbox = Outbox(db)
    ids = [outbox.append(sample(i), 1000.0 + i) for i in range(5)]
    assert ids == sorted(ids)
    assert len(outbox) == 5
    rows = outbox.rows_after(0)
    assert [r.id for r in rows] == ids
    assert [json.loads(r.payload)["seq"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r.id for r in outbox.rows_after(ids[1])] == ids[2:]
    assert outbox.delete_range(ids[0], ids[1]) == 2
    assert len(outbox) == 3
    assert [r.id for r in outbox.rows_after(0)] == ids[2:]


def test_ids_never_go_back_after_the_table_empties(db: DeviceDb) -> None:
    outbox = Outbox(db)
    first = outbox.append(sample(0), 1.0)
    outbox.delete_range(first, first)
    assert outbox.append(sample(1), 2.0) > first


def test_backlog_survives_a_restart(tmp_path: Path) -> None:
    db = DeviceDb(tmp_path / "restart.db")
    outbox = Outbox(db)
    for i in range(10):
        outbox.append(sample(i), float(i))
    db.close()
    db = DeviceDb(tmp_path / "restart.db")
    again = Outbox(db)
    assert len(again) == 10
    assert [json.loads(r.payload)["seq"] for r in again.rows_after(0)] == list(range(10))
    db.close()


def test_batches_respect_the_byte_limit(db: DeviceDb) -> None:
    outbox = Outbox(db)
    for i in range(2000):
        outbox.append(sample(i), float(i))
    cursor, seen = 0, list[int]()
    while rows := outbox.rows_after(cursor):
        payload = batch_payload([r.payload for r in rows])
        assert len(payload) <= MAX_BATCH_BYTES
        assert len(rows) <= MAX_BATCH_SAMPLES
        verdict = parse_telemetry("dev1", payload)
        assert verdict.batch and not verdict.rejected
        seen.extend(s.seq for s in verdict.samples)
        cursor = rows[-1].id
    assert seen == list(range(2000))


def test_batches_respect_the_sample_limit(db: DeviceDb) -> None:
    outbox = Outbox(db)
    tiny = b'{"v":1}'
    with db.transaction() as conn:
        conn.executemany(
            "INSERT INTO outbox (created_at, payload) VALUES (?, ?)", [(1.0, tiny)] * 4000
        )
    assert len(outbox.rows_after(0)) == MAX_BATCH_SAMPLES


def test_prune_drops_rows_older_than_retention_with_a_log_line(
    db: DeviceDb, caplog: pytest.LogCaptureFixture
) -> None:
    outbox = Outbox(db)
    now = time.time()
    day = 86400.0
    for i in range(5):
        outbox.append(sample(i), now - 4 * day + i)  # four days old
    for i in range(5, 8):
        outbox.append(sample(i), now - 2 * day)  # inside the three days
    with caplog.at_level(logging.WARNING, logger="ems_device.outbox"):
        result = outbox.prune(now, retention_s=3 * day, max_rows=1_000_000)
    assert result.expired == 5
    assert len(outbox) == 3
    assert [json.loads(r.payload)["seq"] for r in outbox.rows_after(0)] == [5, 6, 7]
    assert "pruned 5 unsent samples older than 3.0 days" in caplog.text
    assert outbox.prune(now, retention_s=3 * day, max_rows=1_000_000).expired == 0


def test_prune_caps_the_row_count(db: DeviceDb, caplog: pytest.LogCaptureFixture) -> None:
    outbox = Outbox(db)
    for i in range(30):
        outbox.append(sample(i), 100.0)
    with caplog.at_level(logging.WARNING):
        result = outbox.prune(101.0, retention_s=3600, max_rows=20)
    assert result.overflow == 10
    assert len(outbox) == 20
    assert json.loads(outbox.rows_after(0)[0].payload)["seq"] == 10
    assert "capped at 20 rows" in caplog.text


def test_pruning_returns_pages_to_the_file_system(tmp_path: Path) -> None:
    path = tmp_path / "bounded.db"
    db = DeviceDb(path)
    outbox = Outbox(db)
    for i in range(3000):
        outbox.append(sample(i, pad=i), 0.0)
    db.query("PRAGMA wal_checkpoint(TRUNCATE)")
    pages_full = db.query("PRAGMA page_count")[0][0]
    outbox.prune(10 * 86400.0, retention_s=86400.0, max_rows=1_000_000)
    db.query("PRAGMA wal_checkpoint(TRUNCATE)")
    assert db.query("PRAGMA page_count")[0][0] < pages_full / 4
    db.close()


def test_a_concurrent_reader_sees_committed_rows(db: DeviceDb, tmp_path: Path) -> None:
    outbox = Outbox(db)
    outbox.append(sample(0), 1.0)
    with sqlite3.connect(tmp_path / "outbox.db") as other:
        assert other.execute("SELECT count(*) FROM outbox").fetchone()[0] == 1
