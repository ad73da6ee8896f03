"""Which token each MQTT client logged in with, for authorization calls that lack it.

EMQX's authz request and go-auth's ACL request carry client id and username but no
password, so the authn hook remembers ``client id -> (token hash, username)``. Only the
hash is kept (never the secret), memory is bounded (least recently used dropped), and
each ACL check re-reads the principal through the access cache, so revocation and rule
changes apply to the next check. The map lives in this process: after a platform restart
clients must log in again before their ACL checks succeed (brokers re-authenticate on
reconnect; see docs/auth-hooks.md).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

DEFAULT_MAX_CLIENTS = 200_000


@dataclass(frozen=True, slots=True)
class HookSession:
    token_hash: str
    username: str


class HookSessions:
    def __init__(self, max_clients: int = DEFAULT_MAX_CLIENTS) -> None:
        self._max = max_clients
        self._lock = threading.Lock()
        self._by_client: OrderedDict[str, HookSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_client)

    def remember(self, client_id: str, token_hash: str, username: str) -> None:
        with self._lock:
            self._by_client.pop(client_id, None)
            self._by_client[client_id] = HookSession(token_hash, username)
            while len(self._by_client) > self._max:
                self._by_client.popitem(last=False)

    def forget(self, client_id: str) -> None:
        with self._lock:
            self._by_client.pop(client_id, None)

    def get(self, client_id: str) -> HookSession | None:
        with self._lock:
            session = self._by_client.get(client_id)
            if session is not None:
                self._by_client.move_to_end(client_id)
            return session
