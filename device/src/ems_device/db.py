"""The agent's one SQLite file: outbox, remembered commands and small persistent state.

One connection guarded by a lock: the sampler, the meter's energy poller and the event loop
all touch it, and SQLite serialises writers anyway. WAL keeps readers off the writer's back;
``synchronous=NORMAL`` trades the last few transactions on power loss for far fewer SD-card
flushes (the database itself always stays consistent).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ems_contract import Phase

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_created_at ON outbox (created_at);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    ack BLOB
);
CREATE INDEX IF NOT EXISTS commands_received_at ON commands (received_at);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class DeviceDbError(RuntimeError):
    """The agent's SQLite file cannot be opened or written."""


class DeviceDb:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.RLock()
        try:
            if str(path) != ":memory:":
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                str(path), check_same_thread=False, isolation_level=None, timeout=10.0
            )
            # auto_vacuum must be chosen before the first table exists; it lets pruning
            # give pages back to the file system, which keeps the file's size bounded.
            self._conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise DeviceDbError(f"cannot open device database {path}: {exc}") from exc

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock for one IMMEDIATE transaction; roll back if the body raises."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection under the lock, for reads that stream rows instead of fetching all."""
        with self._lock:
            yield self._conn

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def get_state(self, key: str) -> Any:
        """A JSON value stored under ``key``, or None."""
        rows = self.query("SELECT value FROM state WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def set_state(self, key: str, value: Any) -> None:
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO state (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    def vacuum_free_pages(self) -> None:
        with self._lock:
            # The pragma frees one page per step and sqlite3's execute() steps a result-less
            # statement only once; executescript() steps it to completion.
            self._conn.executescript("PRAGMA incremental_vacuum;")

    def close(self) -> None:
        with self._lock:
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint on close failed: %s", exc)
            self._conn.close()


class DbEnergyStore:
    """Persists a meter's cumulative energy per phase so ``energy_kwh`` survives restarts."""

    def __init__(self, db: DeviceDb, key: str = "energy_kwh") -> None:
        self._db = db
        self._key = key

    def load(self) -> dict[str, float]:
        value = self._db.get_state(self._key)
        if not isinstance(value, dict):
            return {}
        return {str(k): float(v) for k, v in value.items()}

    def save(self, energy_kwh: Mapping[Phase, float]) -> None:
        self._db.set_state(self._key, dict(energy_kwh))
