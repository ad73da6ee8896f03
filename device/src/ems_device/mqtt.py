"""The MQTT link: paho-mqtt 2.x driven by the asyncio event loop, with our own reconnects.

All of paho's reading, writing and callbacks happen on the event-loop thread (paho's
external-loop API: ``loop_read``/``loop_write``/``loop_misc`` from ``add_reader``/
``add_writer``), so the agent needs no locks around publish ids. Only the blocking TCP
connect runs in a worker thread, and the loop touches nothing of paho's until it returns.

paho keeps every unacknowledged QoS 1 message and resends it (DUP) after a reconnect, so
a publish made once stays owed until its PUBACK, across any number of link drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from ems_contract.backoff import Backoff

log = logging.getLogger(__name__)


class LinkListener(Protocol):
    """Receives link events on the event-loop thread."""

    def link_up(self) -> None: ...

    def link_down(self) -> None: ...

    def published(self, mid: int) -> None: ...

    def message(self, topic: str, payload: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class LinkConfig:
    host: str
    port: int
    client_id: str
    username: str
    #: Never logged; only handed to paho for the CONNECT packet.
    password: str | None
    will_topic: str
    will_payload: bytes
    keepalive: int = 30
    tls: bool = False
    ca_file: Path | None = None
    max_inflight: int = 20
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    connect_timeout: float = 10.0


class MqttLink:
    def __init__(self, config: LinkConfig, listener: LinkListener) -> None:
        self._config = config
        self._listener = listener
        client = paho.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            clean_session=False,
            protocol=paho.MQTTv311,
            manual_ack=True,
        )
        client.username_pw_set(config.username, config.password)
        client.will_set(config.will_topic, config.will_payload, qos=1, retain=True)
        client.max_inflight_messages_set(config.max_inflight)
        client.connect_timeout = config.connect_timeout
        if config.tls:
            client.tls_set(
                ca_certs=None if config.ca_file is None else str(config.ca_file),
                cert_reqs=ssl.CERT_REQUIRED,
            )
        client.enable_logger(logging.getLogger(f"{__name__}.paho"))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = self._on_socket_unregister_write
        # Stores host and port without connecting; every attempt is then a reconnect().
        client.connect_async(config.host, config.port, keepalive=config.keepalive)
        self._client = client
        self._backoff = Backoff(base=config.reconnect_min, cap=config.reconnect_max)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._attached: Any = None
        self._connected = False
        self._lost = asyncio.Event()
        self._closing = asyncio.Event()
        self._wake = asyncio.Event()
        self._finished = asyncio.Event()
        self._running = False
        self._waiters: dict[int, asyncio.Future[None]] = {}

    @property
    def connected(self) -> bool:
        return self._connected

    # -- paho callbacks (event-loop thread, except socket callbacks during a connect) --

    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        if reason.is_failure:
            log.warning("broker %s:%d refused the connection: %s", *self._where(), reason)
            return
        self._connected = True
        self._backoff.reset()
        log.info("connected to %s:%d as %s", *self._where(), self._config.client_id)
        self._listener.link_up()

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Any,
    ) -> None:
        was_connected = self._connected
        self._connected = False
        self._lost.set()
        self._wake.set()
        if was_connected:
            if self._closing.is_set():
                log.info("disconnected from %s:%d", *self._where())
            else:
                log.warning("lost the connection to %s:%d: %s", *self._where(), reason)
            self._listener.link_down()

    def _on_publish(
        self, client: paho.Client, userdata: Any, mid: int, reason: ReasonCode, properties: Any
    ) -> None:
        waiter = self._waiters.pop(mid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._listener.published(mid)

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            self._listener.message(message.topic, bytes(message.payload))
        except Exception:
            # Leave it unacknowledged: the broker redelivers it after a reconnect.
            log.exception("handling a message on %s failed", message.topic)
            return
        client.ack(message.mid, message.qos)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # Off the loop thread only reconnect() closes a stale socket, already detached.
        if self._on_loop_thread():
            self._detach()
            self._lost.set()
            self._wake.set()

    def _on_socket_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        # During a connect (worker thread) the socket is not attached yet; _attach() looks
        # at want_write() itself once the connect returns.
        if self._on_loop_thread() and self._attached is not None and self._loop is not None:
            self._loop.add_writer(self._attached, self._writable)

    def _on_socket_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._on_loop_thread() and self._attached is not None and self._loop is not None:
            self._loop.remove_writer(self._attached)

    # -- socket plumbing --

    def _readable(self) -> None:
        rc = self._client.loop_read()
        # TLS may hold decrypted bytes that the file descriptor no longer signals.
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            pending = getattr(self._client.socket(), "pending", None)
            if pending is None or pending() <= 0:
                break
            rc = self._client.loop_read()

    def _writable(self) -> None:
        self._client.loop_write()

    def _attach(self) -> None:
        assert self._loop is not None
        sock = self._client.socket()
        if sock is None:
            return
        self._attached = sock
        self._loop.add_reader(sock, self._readable)
        if self._client.want_write():
            self._loop.add_writer(sock, self._writable)

    def _detach(self) -> None:
        if self._attached is not None and self._loop is not None:
            self._loop.remove_reader(self._attached)
            self._loop.remove_writer(self._attached)
        self._attached = None

    def _where(self) -> tuple[str, int]:
        return self._config.host, self._config.port

    # -- public API (event-loop thread) --

    async def run(self) -> None:
        """Keep the link up until ``close()``: connect, serve, back off with jitter, repeat."""
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._running = True
        try:
            while not self._closing.is_set():
                self._lost.clear()
                self._detach()
                try:
                    await asyncio.to_thread(self._client.reconnect)
                except (OSError, ssl.SSLError) as exc:
                    host, port = self._where()
                    await self._pause(f"cannot reach {host}:{port}: {exc}")
                    continue
                self._attach()
                await self._serve()
                if not self._closing.is_set():
                    await self._pause("connection ended")
        finally:
            self._detach()
            self._finished.set()

    async def _serve(self) -> None:
        """Drive keepalive pings until the socket goes away; give up on a silent CONNACK."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.connect_timeout
        while not self._lost.is_set():
            if self._closing.is_set():
                await self._disconnect()
                return
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except TimeoutError:
                self._client.loop_misc()
                if not self._connected and loop.time() > deadline:
                    log.warning("no CONNACK from %s:%d; dropping the attempt", *self._where())
                    deadline = float("inf")
                    self._client.disconnect()
            self._wake.clear()

    async def _disconnect(self) -> None:
        self._client.disconnect()
        try:
            await asyncio.wait_for(self._lost.wait(), timeout=self._config.connect_timeout)
        except TimeoutError:
            log.warning("the broker did not close the connection in time")

    async def _pause(self, why: str) -> None:
        delay = self._backoff.next_delay()
        log.warning("%s; retrying in %.1f s", why, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=delay)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> int | None:
        """Hand a message to paho; its mid, or None while the link is down."""
        if not self._connected:
            return None
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("publish to %s not queued: %s", topic, paho.error_string(info.rc))
            return None
        return info.mid

    async def publish_confirmed(
        self, topic: str, payload: bytes, retain: bool = False, wait_s: float = 5.0
    ) -> bool:
        """Publish at QoS 1 and wait for its PUBACK; False if down or not acked in time."""
        mid = self.publish(topic, payload, qos=1, retain=retain)
        if mid is None:
            return False
        # Registered before yielding to the loop, so the PUBACK cannot slip past it.
        future = self._waiters[mid] = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(future, timeout=wait_s)
        except TimeoutError:
            return False
        finally:
            self._waiters.pop(mid, None)
        return True

    def subscribe(self, topic: str, qos: int = 1) -> None:
        if self._connected:
            self._client.subscribe(topic, qos=qos)

    async def close(self) -> None:
        """Send DISCONNECT (so the broker drops the will) and wait for ``run()`` to end."""
        self._closing.set()
        self._wake.set()
        if self._running:
            await self._finished.wait()
