"""Keeps live MQTT sessions in step with the token table.

ARCHITECTURE section 3: revoking a token ends its live sessions, not just future logins.
The AccessCache reports every change (from PostgreSQL NOTIFY); the guard then re-reads the
principal of each affected connected session, closes those whose token is gone and gives
the others their new rules. A periodic sweep closes sessions whose token has expired (their
checks already fail from the moment of expiry; the sweep just lets the socket go).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from uuid import UUID

import asyncpg

from ems_access import AccessCache
from ems_broker.identity import bind, describe, principal_of, token_hash_of

logger = logging.getLogger(__name__)

_ALL = "*"


class SessionGuard:
    def __init__(self, broker: Any, cache: AccessCache, *, sweep_interval: float = 15.0) -> None:
        self._broker = broker
        self._cache = cache
        self._sweep_interval = sweep_interval
        self._pending: set[UUID | str] = set()
        self._wakeup = asyncio.Event()

    def _changed(self, token_id: UUID | None) -> None:
        self._pending.add(_ALL if token_id is None else token_id)
        self._wakeup.set()

    async def run(self) -> None:
        remove = self._cache.on_change(self._changed)
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self._sweep_interval)
                self._wakeup.clear()
                changed, self._pending = self._pending, set()
                try:
                    await self.check(changed)
                except Exception:
                    # The guard must outlive any one bad check, or revocations stop applying.
                    logger.exception("session check failed; retrying on the next change")
                    self._pending |= changed
        finally:
            remove()

    async def check(self, changed: set[UUID | str]) -> None:
        for session, handler in list(self._broker.sessions.values()):
            if not session.transitions.is_connected():
                continue
            principal = principal_of(session)
            if principal is None:
                continue
            if principal.is_expired():
                await self._close(session, handler, "token expired")
            elif _ALL in changed or principal.token_id in changed:
                await self._refresh(session, handler)

    async def _refresh(self, session: Any, handler: Any) -> None:
        token_hash = token_hash_of(session)
        if token_hash is None:
            return
        try:
            principal = await self._cache.lookup_hash(token_hash)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # Keep the session on its current rules and try again on the next change/sweep.
            logger.warning("cannot re-check MQTT session (%s): %s", describe(session), exc)
            self._pending.add(_ALL)
            return
        if principal is None:
            await self._close(session, handler, "token revoked, rotated or expired")
        else:
            bind(session, principal, token_hash)

    async def _close(self, session: Any, handler: Any, reason: str) -> None:
        logger.warning("closing MQTT connection (%s): %s", describe(session), reason)
        await handler.handle_connection_closed()
