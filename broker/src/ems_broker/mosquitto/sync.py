"""Keeping the access snapshot in step with the database.

One pooled connection LISTENs on ``ems_access`` (the store NOTIFYs every token change in
its transaction); each notification marks the snapshot dirty and the writer re-exports it
at once, so a revocation reaches the plugin within one query plus its 100 ms file check.
A full re-export also runs every ``refresh`` seconds, as a backstop for changes made
behind the store's back. While the database is down the last snapshot stays in force.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import asyncpg

from ems_access.store import CHANNEL, export_snapshot
from ems_broker.mosquitto.snapshot import render_snapshot, write_snapshot
from ems_contract.backoff import Backoff

logger = logging.getLogger(__name__)

_DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


class SnapshotExportError(RuntimeError):
    """The snapshot could not be exported from the database."""


class SnapshotSync:
    def __init__(self, pool: asyncpg.Pool[Any], path: Path, *, refresh: float = 30.0) -> None:
        self._pool = pool
        self._path = path
        self._refresh = refresh
        self._dirty = asyncio.Event()
        self.exports = 0

    async def export(self) -> bool:
        """Write the snapshot from the database now; True if its content changed."""
        try:
            tokens = await export_snapshot(self._pool)
        except _DB_ERRORS as exc:
            raise SnapshotExportError(f"cannot export the access snapshot: {exc}") from exc
        changed = await asyncio.to_thread(write_snapshot, self._path, render_snapshot(tokens))
        self.exports += 1
        if changed:
            logger.info("access snapshot updated: %d live token(s)", len(tokens))
        return changed

    def mark_dirty(self) -> None:
        self._dirty.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._listen_forever(), name="ems-mosquitto-listen")
            tasks.create_task(self._write_forever(), name="ems-mosquitto-snapshot")

    async def _write_forever(self) -> None:
        backoff = Backoff(base=0.2, cap=5.0)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._dirty.wait(), self._refresh)
            self._dirty.clear()
            try:
                await self.export()
                backoff.reset()
            except SnapshotExportError as exc:
                logger.warning("%s; the last snapshot stays in force", exc)
                await backoff.sleep()
                self._dirty.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, _payload: object) -> None:
        self._dirty.set()

    async def _listen_forever(self) -> None:
        backoff = Backoff(base=0.2, cap=5.0)
        while True:
            try:
                await self._listen_once()
                backoff.reset()
            except _DB_ERRORS as exc:
                logger.warning("access change listener lost the database: %s", exc)
            await backoff.sleep()

    async def _listen_once(self) -> None:
        async with self._pool.acquire() as conn:
            closed = asyncio.Event()

            def on_close(_conn: object) -> None:
                closed.set()

            conn.add_termination_listener(on_close)
            await conn.add_listener(CHANNEL, self._on_notify)
            try:
                # Changes made while nobody listened were not announced: export once.
                self._dirty.set()
                await closed.wait()
            finally:
                conn.remove_termination_listener(on_close)
                if not conn.is_closed():
                    with contextlib.suppress(*_DB_ERRORS):
                        await conn.remove_listener(CHANNEL, self._on_notify)
            logger.warning("access change listener connection closed")
