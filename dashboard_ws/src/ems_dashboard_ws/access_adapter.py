"""The database-backed authenticator: ``ems_access``'s cache behind the adapter's Protocols."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from ems_access.cache import AccessCache
from ems_access.rules import Principal
from ems_dashboard_ws.policy import AuthUnavailable
from ems_dashboard_ws.principal_policy import PrincipalPolicy
from ems_dashboard_ws.settings import DashboardSettings

_POLICY_MEMO_LIMIT = 10_000


class AccessAuthenticator:
    """Token -> ``PrincipalPolicy`` through ``AccessCache`` (TTL + NOTIFY invalidation)."""

    def __init__(self, cache: AccessCache) -> None:
        self._cache = cache
        # Equal principals share one policy object, so re-checks that find nothing changed
        # leave each session's route cache alone.
        self._policies: dict[Principal, PrincipalPolicy] = {}

    async def authenticate(self, token: str) -> PrincipalPolicy | None:
        try:
            principal = await self._cache.authenticate(token)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise AuthUnavailable(f"token store unavailable: {type(exc).__name__}") from exc
        if principal is None:
            return None
        policy = self._policies.get(principal)
        if policy is None:
            if len(self._policies) >= _POLICY_MEMO_LIMIT:
                self._policies.clear()
            policy = self._policies[principal] = PrincipalPolicy(principal)
        return policy

    def on_change(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Call ``listener`` whenever a token or its rules change; returns the remover."""
        return self._cache.on_change(lambda _token_id: listener())


@asynccontextmanager
async def open_authenticator(settings: DashboardSettings) -> AsyncIterator[AccessAuthenticator]:
    # min_size=0: the adapter starts (and serves /healthz) while the database is still
    # coming up; handshakes are refused with 1013 until it answers.
    pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
        settings.database_url.get_secret_value(), min_size=0, max_size=4
    )
    try:
        async with AccessCache(pool, ttl=settings.auth_cache_ttl) as cache:
            yield AccessAuthenticator(cache)
    finally:
        await pool.close()
