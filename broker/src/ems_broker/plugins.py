"""amqtt plugins: token authentication and topic ACLs, both backed by ems_access.

amqtt builds plugins itself from the ``plugins`` section of its config; the AccessCache is
handed over through the auth plugin's Config dataclass (dacite passes ``Any`` through).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import asyncpg
from amqtt.contexts import Action
from amqtt.mqtt.connack import BAD_USERNAME_PASSWORD, NOT_AUTHORIZED, SERVER_UNAVAILABLE
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from ems_access import AccessCache, Principal, hash_token
from ems_access.topics import is_valid_topic_name
from ems_broker.identity import bind, describe, principal_of, refuse

logger = logging.getLogger(__name__)


def _device_binding_ok(principal: Principal, session: Any) -> bool:
    if principal.role != "device":
        return True
    device_id = principal.device_id
    return bool(session.client_id == device_id and session.username == device_id)


def _will_allowed(principal: Principal, session: Any) -> bool:
    # amqtt publishes a will without any ACL check, so a device could otherwise leave a
    # retained "offline" on another device's status topic.
    if not session.will_flag:
        return True
    topic = session.will_topic or ""
    if not is_valid_topic_name(topic) or topic.startswith("$"):
        return False
    return principal.can("write", topic, client_id=session.client_id, username=session.username)


class TokenAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """The MQTT password is an EMS token; device tokens are bound to their device id."""

    @dataclass
    class Config:
        access: Any = None

    async def authenticate(self, *, session: Any) -> bool:
        cache: AccessCache = self.config.access
        token = session.password
        # amqtt keeps the password on the session for its lifetime; we only need the hash.
        session.password = None
        if not token:
            return self._refuse(session, BAD_USERNAME_PASSWORD, "no token given as password")
        try:
            principal = await cache.authenticate(token)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            logger.error(
                "cannot check MQTT token (%s): database unavailable: %s", describe(session), exc
            )
            refuse(session, SERVER_UNAVAILABLE)
            return False
        except Exception:
            # Whatever else goes wrong, the client gets a CONNACK, not a dropped socket.
            logger.exception("cannot check MQTT token (%s)", describe(session))
            refuse(session, SERVER_UNAVAILABLE)
            return False
        if principal is None:
            return self._refuse(session, BAD_USERNAME_PASSWORD, "unknown, revoked or expired token")
        if not _device_binding_ok(principal, session):
            return self._refuse(
                session,
                NOT_AUTHORIZED,
                f"device token of {principal.device_id!r} needs that id as client id and username",
            )
        if not _will_allowed(principal, session):
            return self._refuse(session, NOT_AUTHORIZED, "last-will topic not allowed")
        bind(session, principal, hash_token(token))
        logger.info(
            "MQTT connection accepted (%s) for %s token %s",
            describe(session),
            principal.role,
            principal.token_id,
        )
        return True

    @staticmethod
    def _refuse(session: Any, return_code: int, reason: str) -> bool:
        logger.warning("refused MQTT connection (%s): %s", describe(session), reason)
        refuse(session, return_code)
        return False


class AclTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """Publish, subscribe and receive checks through the session's Principal."""

    @dataclass
    class Config:
        pass

    def check(self, session: Any, topic: str | None, action: Any) -> bool:
        principal = principal_of(session)
        if principal is None or topic is None:
            return False
        client_id, username = session.client_id, session.username
        if action == Action.RECEIVE:
            return principal.can("read", topic, client_id=client_id, username=username)
        if action == Action.PUBLISH:
            allowed = principal.can("write", topic, client_id=client_id, username=username)
        elif action == Action.SUBSCRIBE:
            allowed = principal.can_subscribe(topic, client_id=client_id, username=username)
        else:
            return False
        if not allowed:
            logger.info("denied %s of %r (%s)", action, topic, describe(session))
        return allowed

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Any = None
    ) -> bool:
        return self.check(session, topic, action)
