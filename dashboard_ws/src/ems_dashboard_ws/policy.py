"""The I/O boundary between the adapter and the access engine.

The adapter only needs two questions answered: "who holds this token?" (slow, may hit the
database) and "may they read this topic?" (fast, in memory, asked per message).
``access_adapter`` wraps ``ems_access`` principals and its cache in these Protocols;
tests of the pure routing logic use fakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class ReadPolicy(Protocol):
    def can_read(self, topic: str) -> bool:
        """May the holder receive a message on this concrete topic? Asked per message."""
        ...

    def may_subscribe(self, topic_filter: str) -> bool:
        """Could the holder read anything through this filter? Asked per subscription."""
        ...


class Authenticator(Protocol):
    async def authenticate(self, token: str) -> ReadPolicy | None:
        """The principal holding ``token``, or None when it is unknown, expired or revoked."""
        ...


class AuthUnavailable(RuntimeError):
    """The token store could not be asked (database down); not the client's fault."""


class StaticAuthenticator:
    """A fixed token -> policy table: the fake for tests of the routing logic."""

    def __init__(self, policies: Mapping[str, ReadPolicy]) -> None:
        self.policies = dict(policies)

    async def authenticate(self, token: str) -> ReadPolicy | None:
        return self.policies.get(token)
