"""In-memory token-hash -> Principal cache, kept fresh by PostgreSQL NOTIFY.

The broker authenticates on every CONNECT and the API on every request; both go through
this cache so a burst of logins costs one query per distinct token. Store functions send
``NOTIFY ems_access`` on every change, and the cache listens on a dedicated pooled
connection, so revocations and ACL edits apply within one round trip, not one TTL. The TTL
remains as a backstop for changes made behind the store's back and for the time the
listener is reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self
from uuid import UUID

import asyncpg

from ems_access import store
from ems_access.rules import Principal
from ems_access.tokens import hash_token
from ems_contract.backoff import Backoff

logger = logging.getLogger(__name__)

ChangeListener = Callable[[UUID | None], None]
# A fetch that raced with an invalidation is repeated this many times before it is
# returned uncached (the freshest answer we could get).
_MAX_REFETCH = 3


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal | None
    valid_until: float


class AccessCache:
    """Use as ``async with AccessCache(pool) as cache:`` to also listen for changes."""

    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        *,
        ttl: float = 60.0,
        negative_ttl: float = 2.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._ttl = ttl
        self._negative_ttl = negative_ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._inflight: dict[str, asyncio.Task[Principal | None]] = {}
        self._generation = 0
        self._listeners: list[ChangeListener] = []
        self._listening = asyncio.Event()
        self._listen_task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._listen_task = asyncio.create_task(self._listen_forever(), name="ems-access-notify")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task, self._listen_task = self._listen_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for pending in list(self._inflight.values()):
            pending.cancel()

    @property
    def listening(self) -> bool:
        """True while NOTIFYs are being received (entries are then kept fresh live)."""
        return self._listening.is_set()

    async def wait_listening(self) -> None:
        await self._listening.wait()

    def on_change(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener(token_id)`` after each change (None: any token may have changed).

        Listeners run synchronously in the event loop; schedule real work as a task.
        Returns a function that removes the listener.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def invalidate(self, token_id: UUID | None = None) -> None:
        """Forget one token (every entry that resolved to it) or, with None, everything."""
        self._generation += 1
        if token_id is None:
            self._entries.clear()
            return
        # Unknown-token entries go too: the change may be a token these hashes now name.
        stale = [
            key
            for key, entry in self._entries.items()
            if entry.principal is None or entry.principal.token_id == token_id
        ]
        for key in stale:
            del self._entries[key]

    async def authenticate(self, token: str) -> Principal | None:
        """The live principal for a presented token, or None."""
        if not token:
            return None
        return await self.lookup_hash(hash_token(token))

    def peek_hash(self, token_hash: str) -> Principal | None:
        """The cached answer without touching the database (None if absent or stale)."""
        entry = self._entries.get(token_hash)
        if entry is None or entry.valid_until <= self._clock():
            return None
        principal = entry.principal
        return None if principal is None or principal.is_expired() else principal

    async def lookup_hash(self, token_hash: str) -> Principal | None:
        entry = self._entries.get(token_hash)
        if entry is not None and entry.valid_until > self._clock():
            principal = entry.principal
            return None if principal is None or principal.is_expired() else principal
        task = self._inflight.get(token_hash)
        if task is None:
            # One query per hash however many connections ask at once; shielded so a
            # client that gives up does not cancel the answer the others wait for.
            task = asyncio.create_task(self._fetch(token_hash), name="ems-access-fetch")
            self._inflight[token_hash] = task
            task.add_done_callback(lambda _: self._inflight.pop(token_hash, None))
        return await asyncio.shield(task)

    async def _fetch(self, token_hash: str) -> Principal | None:
        principal: Principal | None = None
        for _ in range(_MAX_REFETCH):
            generation = self._generation
            principal = await store.authenticate_hash(self._pool, token_hash)
            if generation == self._generation:
                self._store(token_hash, principal)
                break
        return principal

    def _store(self, token_hash: str, principal: Principal | None) -> None:
        if len(self._entries) >= self._max_entries:
            now = self._clock()
            for key in [k for k, e in self._entries.items() if e.valid_until <= now]:
                del self._entries[key]
            while len(self._entries) >= self._max_entries:
                del self._entries[next(iter(self._entries))]
        ttl = self._ttl if principal is not None else self._negative_ttl
        self._entries[token_hash] = _Entry(principal, self._clock() + ttl)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        token_id: UUID | None = None
        if isinstance(payload, str) and payload != store.ALL_TOKENS:
            try:
                token_id = UUID(payload)
            except ValueError:
                logger.warning("ignoring malformed %s notification", store.CHANNEL)
                return
        self._changed(token_id)

    def _changed(self, token_id: UUID | None) -> None:
        self.invalidate(token_id)
        for listener in list(self._listeners):
            try:
                listener(token_id)
            except Exception:
                logger.exception("access change listener failed")

    async def _listen_forever(self) -> None:
        backoff = Backoff()
        while True:
            try:
                await self._listen_once()
                backoff.reset()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("access change listener lost the database: %s", exc)
            except Exception:
                # Never let the listener die: without it changes only apply after the TTL.
                logger.exception("access change listener failed; restarting it")
            await backoff.sleep()

    async def _listen_once(self) -> None:
        async with self._pool.acquire() as conn:
            closed = asyncio.Event()

            def on_close(_conn: object) -> None:
                closed.set()

            conn.add_termination_listener(on_close)
            await conn.add_listener(store.CHANNEL, self._on_notify)
            try:
                # Notifications sent while nobody listened are lost: start from scratch.
                self._changed(None)
                self._listening.set()
                logger.debug("listening for access changes")
                await closed.wait()
            finally:
                self._listening.clear()
                conn.remove_termination_listener(on_close)
                if not conn.is_closed():
                    with contextlib.suppress(
                        OSError, asyncpg.PostgresError, asyncpg.InterfaceError
                    ):
                        await conn.remove_listener(store.CHANNEL, self._on_notify)
            logger.warning("access change listener connection closed")
