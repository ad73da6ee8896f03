"""Re-checking live sessions, so that revoking a token or editing its ACL takes effect.

The per-message path only consults the principal a session already holds; the refresher
replaces it from the access cache and ends the sessions whose token is no longer valid
(ARCHITECTURE section 3). It runs at once when the access engine reports a change and
every ``interval`` seconds as a backstop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from ems_dashboard_ws.hub import Hub
from ems_dashboard_ws.policy import Authenticator, AuthUnavailable, ReadPolicy

logger = logging.getLogger(__name__)

REVOKED_REASON = "token revoked or expired"


async def refresh_once(hub: Hub, authenticator: Authenticator) -> int:
    """Re-authenticate every session's token once; return how many sessions were ended."""
    verdicts: dict[str, ReadPolicy | None] = {}
    ended = 0
    for session in hub.sessions:
        token = session.token
        if token not in verdicts:
            try:
                verdicts[token] = await authenticator.authenticate(token)
            except AuthUnavailable as exc:
                # Keep serving the principals we have: a database blip must not blank
                # every dashboard. Revocation waits for the next successful check.
                logger.warning("cannot re-check sessions: %s", exc)
                return ended
        policy = verdicts[token]
        if policy is None:
            hub.detach(session)
            session.request_close(1008, REVOKED_REASON)
            ended += 1
        elif policy != session.policy:
            # Only a changed principal (edited ACL, new expiry) resets the route cache.
            session.set_policy(policy)
    return ended


class SessionRefresher:
    def __init__(self, hub: Hub, authenticator: Authenticator, interval: float) -> None:
        self._hub = hub
        self._authenticator = authenticator
        self._interval = interval
        self._wakeup = asyncio.Event()

    def wake(self) -> None:
        """Re-check soon (called from the access engine's change notifications)."""
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wakeup.wait()
            self._wakeup.clear()
            ended = await refresh_once(self._hub, self._authenticator)
            if ended:
                logger.info("ended %d WebSocket sessions whose token is no longer valid", ended)
