"""One browser connection: its subscriptions, its principal and its bounded outbox.

The fan-out never awaits a browser: it only appends to the session's outbox. When the outbox
is full the oldest message is dropped and counted, and the sender later tells the browser
how many it missed with a ``lag`` frame. Control replies (``subscribed``, ``error``) are never
dropped: a browser must always learn the outcome of its own requests.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass

from ems_access.topics import topic_matches
from ems_dashboard_ws import frames
from ems_dashboard_ws.policy import ReadPolicy

_ids = itertools.count(1)
_ROUTE_CACHE_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class CloseRequest:
    code: int
    reason: str


class Session:
    def __init__(self, policy: ReadPolicy, token: str, *, queue_size: int, peer: str) -> None:
        self.id = next(_ids)
        self.peer = peer
        self.policy = policy
        # Kept only to re-check the token with the access engine; never logged or shown.
        self._token = token
        self._queue_size = queue_size
        self._outbox: deque[tuple[str, bool]] = deque()
        self._queued_messages = 0
        self._dropped = 0
        self.dropped_total = 0
        self._wakeup = asyncio.Event()
        self._filters: dict[str, None] = {}
        self._routes: dict[str, bool] = {}
        self.close_request: asyncio.Future[CloseRequest] = (
            asyncio.get_running_loop().create_future()
        )

    def __repr__(self) -> str:
        return f"<Session {self.id} {self.peer} filters={len(self._filters)}>"

    @property
    def token(self) -> str:
        return self._token

    @property
    def filters(self) -> list[str]:
        return list(self._filters)

    # -- routing -------------------------------------------------------------------------

    def may_read(self, topic: str) -> bool:
        return self.policy.can_read(topic)

    def wants(self, topic: str) -> bool:
        """Subscribed to ``topic`` and allowed to read it; memoised per topic."""
        hit = self._routes.get(topic)
        if hit is None:
            hit = any(topic_matches(f, topic) for f in self._filters) and self.may_read(topic)
            if len(self._routes) >= _ROUTE_CACHE_LIMIT:
                self._routes.clear()
            self._routes[topic] = hit
        return hit

    def add_filters(self, topic_filters: list[str]) -> None:
        for topic_filter in topic_filters:
            self._filters[topic_filter] = None
        self._routes.clear()

    def remove_filters(self, topic_filters: list[str]) -> list[str]:
        removed = [f for f in topic_filters if f in self._filters]
        for topic_filter in removed:
            del self._filters[topic_filter]
        self._routes.clear()
        return removed

    def set_policy(self, policy: ReadPolicy) -> None:
        self.policy = policy
        self._routes.clear()

    # -- outbox --------------------------------------------------------------------------

    def offer(self, frame: str) -> None:
        """Queue a message frame; when full, drop the oldest queued message."""
        if self._queued_messages >= self._queue_size:
            self._drop_oldest_message()
        self._outbox.append((frame, True))
        self._queued_messages += 1
        self._wakeup.set()

    def send_control(self, frame: str) -> None:
        self._outbox.append((frame, False))
        self._wakeup.set()

    def _drop_oldest_message(self) -> None:
        for index, (_, droppable) in enumerate(self._outbox):
            if droppable:
                del self._outbox[index]
                self._queued_messages -= 1
                self._dropped += 1
                self.dropped_total += 1
                return

    async def next_frame(self) -> str:
        """The next frame to send, preceded by a ``lag`` notice after drops."""
        while not self._outbox and not self._dropped:
            self._wakeup.clear()
            await self._wakeup.wait()
        if self._dropped:
            dropped, self._dropped = self._dropped, 0
            return frames.lag(dropped)
        frame, droppable = self._outbox.popleft()
        if droppable:
            self._queued_messages -= 1
        return frame

    @property
    def queued(self) -> int:
        return len(self._outbox)

    def request_close(self, code: int, reason: str) -> None:
        if not self.close_request.done():
            self.close_request.set_result(CloseRequest(code, reason))
