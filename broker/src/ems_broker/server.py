"""EmsBroker: amqtt 0.12.1's Broker with its connection lifecycle made safe for tokens.

Each override names the upstream defect it closes (see broker/README.md for the list):

- ``_initialize_client_session``: a CONNECT must arrive within a deadline (upstream waits
  forever), and the handler is our EmsProtocolHandler (keepalive, PUBACK after routing).
- ``_handle_client_session``: authenticate *before* touching the session table. Upstream
  deletes the old session of a clean-session client id and registers the new handler before
  the password is checked, so any unauthenticated CONNECT could wipe or hijack a device's
  session. Takeover also waits for the old connection to finish (upstream leaves the new one
  deaf when clean_session = 0) and follows the ownership policy of ``takeover``.
- ``_handle_message_delivery``: a bad topic closes the connection properly (upstream breaks
  out of the message loop and leaves a zombie); ``$`` topics are dropped like any denial.
- ``_handle_disconnect``: messages received before a disconnect are routed, not discarded.
- ``_publish_retained_messages_for_subscription`` and ``_publish_session_retained_messages``:
  retained and queued messages pass the receive ACL (upstream sends them past it), queued
  messages lose the retain flag they never had, and retained messages are no longer re-sent
  for every subscription of every client on each reconnect.
- ``_retain_broadcast_message``: the offline queue of a persistent session is bounded.

Failed logins are counted per client address (``ems_access.ratelimit``): an address over
its limit is refused with CONNACK 5 before its token is even looked at.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import weakref
from typing import Any

from amqtt.adapters import StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.contexts import Action
from amqtt.errors import NoDataError
from amqtt.events import BrokerEvents
from amqtt.mqtt.connack import (
    BAD_USERNAME_PASSWORD,
    IDENTIFIER_REJECTED,
    NOT_AUTHORIZED,
    SERVER_UNAVAILABLE,
    ConnackPacket,
)

from ems_access.ratelimit import FailureLimiter, log_refusal
from ems_access.topics import is_valid_topic_name
from ems_broker.framing import FramedReader
from ems_broker.handler import EmsProtocolHandler, RoutedMessage
from ems_broker.identity import describe, principal_of, refusal_of
from ems_broker.plugins import AclTopicPlugin
from ems_broker.takeover import Decision, decide

logger = logging.getLogger(__name__)

# How long a takeover waits for the replaced connection to publish its will and let go.
_EVICT_TIMEOUT = 5.0
_SESSION_FIELDS = (
    "will_flag",
    "will_message",
    "will_topic",
    "will_qos",
    "will_retain",
    "keep_alive",
    "username",
    "password",
    "remote_address",
    "remote_port",
    "ssl_object",
)


class ConnectError(Exception):
    """A connection that never produced a usable CONNECT."""


class EmsBroker(Broker):  # type: ignore[misc]
    def __init__(
        self,
        config: dict[str, Any],
        *,
        max_packet: int,
        connect_timeout: float,
        max_queued: int,
        limiter: FailureLimiter | None = None,
    ) -> None:
        super().__init__(config)
        self._limiter = limiter if limiter is not None else FailureLimiter()
        self._max_packet = max_packet
        self._connect_timeout = connect_timeout
        self._max_queued = max_queued
        self._client_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        acl = self.plugins_manager.get_plugin("AclTopicPlugin")
        only_acl = isinstance(acl, AclTopicPlugin) and len(self.plugins_manager._topic_plugins) == 1
        self._acl: AclTopicPlugin | None = acl if only_acl else None

    def bound_port(self, listener: str = "default") -> int:
        """The TCP port actually bound (useful with port 0)."""
        server = self._servers[listener].instance
        return int(server.sockets[0].getsockname()[1])

    # -- connection set-up -----------------------------------------------------------------

    async def stream_connected(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, listener_name: str
    ) -> None:
        peer = writer.get_extra_info("peername")
        peer_text = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        framed = FramedReader(reader, max_packet=self._max_packet, peer=peer_text)
        await self._client_connected(listener_name, framed, StreamWriterAdapter(writer))

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> tuple[Any, Any]:
        try:
            handler, session = await asyncio.wait_for(
                EmsProtocolHandler.init_from_connect(reader, writer, self.plugins_manager),
                self._connect_timeout,
            )
        except Exception as exc:
            # Anything a stranger sends before CONNECT must end in a closed socket, never in
            # an exception that leaves it open (upstream keeps some of these sockets).
            # A bare connect-and-close (port probes, health checks) is not worth a log line.
            level = logging.DEBUG if isinstance(exc, NoDataError) else logging.INFO
            logger.log(level, "no usable CONNECT from %s:%s: %r", remote_address, remote_port, exc)
            with contextlib.suppress(Exception):
                await writer.close()
            raise ConnectError(str(exc)) from exc
        if session.keep_alive > 0:
            # MQTT 3.1.1 section 3.1.2.10: the server allows one and a half keepalive periods.
            session.keep_alive = math.ceil(session.keep_alive * 1.5)
        return handler, session

    async def _client_connected(self, listener_name: str, reader: Any, writer: Any) -> None:
        try:
            await super()._client_connected(listener_name, reader, writer)
        except ConnectError:
            # Upstream releases the listener's connection slot only for its own error types;
            # ours is separate so that port probes do not log amqtt warnings.
            server = self._servers.get(listener_name)
            if server is not None:
                server.release_connection()

    async def _refuse(self, writer: Any, return_code: int) -> None:
        with contextlib.suppress(Exception):
            await ConnackPacket.build(0, return_code).to_stream(writer)
            await writer.close()

    async def _handle_client_session(
        self,
        reader: Any,
        writer: Any,
        client_session: Any,
        handler: Any,
        server: Any,
        listener_name: str,
    ) -> None:
        address = client_session.remote_address
        retry_after = self._limiter.blocked(address)
        if retry_after > 0:
            # Refused before the token is looked at, so guessing costs the guesser, not us.
            client_session.password = None
            log_refusal("mqtt", address, "rate limited", retry_after=retry_after)
            await self._refuse(writer, NOT_AUTHORIZED)
            return
        try:
            authenticated = await self._authenticate(
                client_session, self.listeners_config[listener_name]
            )
        except Exception:
            logger.exception("authentication failed (%s)", describe(client_session))
            await self._refuse(writer, SERVER_UNAVAILABLE)
            return
        principal = principal_of(client_session)
        if not authenticated or principal is None:
            code = refusal_of(client_session, NOT_AUTHORIZED)
            if code == BAD_USERNAME_PASSWORD:
                # Only a wrong or missing token is a guess; a valid token used with the
                # wrong device id, or a database outage, is not.
                self._limiter.failed(address)
            await self._refuse(writer, code)
            return
        self._limiter.succeeded(address)
        client_id: str = client_session.client_id
        lock = self._client_locks.setdefault(client_id, asyncio.Lock())
        async with lock:
            session = await self._claim_session(client_session, principal)
            if session is None:
                await self._refuse(writer, IDENTIFIER_REJECTED)
                return
            session.transitions.connect()
            handler.attach(session, reader, writer)
            self._sessions[client_id] = (session, handler)
            await handler.mqtt_connack_authorize(True)
        try:
            await self.plugins_manager.fire_event(
                BrokerEvents.CLIENT_CONNECTED, client_id=client_id, client_session=session
            )
            await handler.start()
            await self._publish_session_retained_messages(session)
            await self._client_message_loop(session, handler)
        finally:
            await self._ensure_closed(session, handler)
            handler.finished.set()

    async def _claim_session(self, new: Any, principal: Any) -> Any | None:
        """Resolve the client id against the session table: the session to use, or None."""
        client_id = new.client_id
        existing = self._sessions.get(client_id)
        if existing is None:
            new.parent = 0
            return new
        old_session, old_handler = existing
        connected = old_session.transitions.is_connected()
        decision = decide(
            principal,
            principal_of(old_session),
            old_connected=connected,
            clean_session=bool(new.clean_session),
        )
        if decision is Decision.REFUSE:
            logger.warning(
                "refused MQTT connection (%s): client id in use by another token", describe(new)
            )
            return None
        if connected:
            logger.info(
                "MQTT client id %r taken over by a new connection (%s)", client_id, describe(new)
            )
            await self._evict(old_handler)
        resumable = not old_session.clean_session and (
            self._sessions.get(client_id, (None,))[0] is old_session
        )
        if decision is Decision.RESUME and resumable:
            for name in _SESSION_FIELDS:
                setattr(old_session, name, getattr(new, name))
            old_session.attributes = dict(new.attributes)
            old_session.parent = 1
            if old_session.transitions.is_connected():
                old_session.transitions.disconnect()
            return old_session
        await self._delete_session(client_id)
        new.parent = 0
        return new

    async def _evict(self, handler: Any) -> None:
        await handler.handle_connection_closed()
        await handler.stop()
        finished = getattr(handler, "finished", None)
        if finished is None:
            return
        try:
            await asyncio.wait_for(finished.wait(), _EVICT_TIMEOUT)
        except TimeoutError:
            logger.warning("replaced MQTT connection did not finish within %.0f s", _EVICT_TIMEOUT)

    async def _ensure_closed(self, session: Any, handler: Any) -> None:
        """Whatever ended the message loop, leave no half-alive connection behind."""
        current = self._sessions.get(session.client_id, (None, None))[1]
        if current is handler and session.transitions.is_connected():
            await self._stop_handler(handler)
            session.transitions.disconnect()
            await self.plugins_manager.fire_event(
                BrokerEvents.CLIENT_DISCONNECTED,
                client_id=session.client_id,
                client_session=session,
            )

    # -- message flow ----------------------------------------------------------------------

    async def _topic_filtering(self, session: Any, topic: str, action: Any) -> bool:
        # The ACL is pure CPU work on the session's Principal: calling it directly saves the
        # task amqtt's plugin manager creates for every check of every delivered message.
        if self._acl is not None:
            return self._acl.check(session, topic, action)
        return bool(await super()._topic_filtering(session, topic, action))

    async def _handle_message_delivery(
        self, client_session: Any, handler: Any, wait_deliver: asyncio.Future[Any]
    ) -> bool:
        await self._route(client_session, handler, wait_deliver.result())
        return True

    async def _route(self, session: Any, handler: Any, message: Any) -> None:
        try:
            if message is None:
                return
            await self.plugins_manager.fire_event(
                BrokerEvents.MESSAGE_RECEIVED, client_id=session.client_id, message=message
            )
            topic = message.topic
            if not is_valid_topic_name(topic):
                logger.warning(
                    "closing MQTT connection (%s): PUBLISH with invalid topic", describe(session)
                )
                await handler.handle_connection_closed()
                return
            if topic.startswith("$"):
                logger.info("dropped PUBLISH to reserved topic %r (%s)", topic, describe(session))
                return
            if not await self._topic_filtering(session, topic, Action.PUBLISH):
                return
            await self.plugins_manager.fire_event(
                BrokerEvents.MESSAGE_BROADCAST, client_id=session.client_id, message=message
            )
            await self._broadcast_message(session, topic, message.data)
            if message.publish_packet is not None and message.publish_packet.retain_flag:
                await self.retain_message(session, topic, message.data, message.qos)
        finally:
            if isinstance(message, RoutedMessage):
                message.mark_routed()

    async def _handle_disconnect(
        self, client_session: Any, handler: Any, disconnect_waiter: asyncio.Future[Any]
    ) -> None:
        pending = client_session.delivered_message_queue
        while not pending.empty():
            await self._route(client_session, handler, pending.get_nowait())
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)

    async def _retain_broadcast_message(
        self, broadcast: dict[str, Any], qos: int, target_session: Any
    ) -> None:
        queue = target_session.retained_messages
        if queue.qsize() >= self._max_queued:
            logger.warning(
                "offline queue of MQTT client %r is full (%d): dropping its oldest message",
                target_session.client_id,
                self._max_queued,
            )
            while queue.qsize() >= self._max_queued:
                queue.get_nowait()
        await super()._retain_broadcast_message(broadcast, qos, target_session)

    async def _publish_session_retained_messages(self, session: Any) -> None:
        handler = self._get_handler(session)
        if handler is None:
            return
        sends = []
        queue = session.retained_messages
        while not queue.empty():
            queued = queue.get_nowait()
            if await self._topic_filtering(session, queued.topic, Action.RECEIVE):
                sends.append(
                    handler.mqtt_publish(queued.topic, queued.data, queued.qos, retain=False)
                )
        await self._gather_sends(sends, session)

    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Any
    ) -> None:
        handler = self._get_handler(session)
        if handler is None:
            return
        topic_filter, qos = subscription
        sends = []
        for topic, retained in list(self._retained_messages.items()):
            if not self._matches(topic, topic_filter):
                continue
            if not await self._topic_filtering(session, topic, Action.RECEIVE):
                continue
            retained_qos = qos if retained.qos is None else min(qos, retained.qos)
            sends.append(
                handler.mqtt_publish(retained.topic, retained.data, retained_qos, retain=True)
            )
        await self._gather_sends(sends, session)

    async def _gather_sends(self, sends: list[Any], session: Any) -> None:
        if not sends:
            return
        results = await asyncio.gather(*sends, return_exceptions=True)
        failed = sum(1 for result in results if isinstance(result, BaseException))
        if failed:
            logger.info(
                "%d of %d stored messages not acknowledged by %s",
                failed,
                len(sends),
                describe(session),
            )
