"""The MQTT side of ingest: one persistent session, resubscribed after every reconnect.

Messages are acknowledged to the broker only after their batch committed (``acks.py``), so
whatever this process holds in memory is also still held by the broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import aiomqtt

from ems_contract import TopicKind, all_filter
from ems_contract.backoff import Backoff
from ems_platform.ingest.acks import Acknowledger, PahoAck, enable_manual_ack
from ems_platform.ingest.envelope import Incoming
from ems_platform.ingest.flow_client import FlowControlledClient
from ems_platform.ingest.packet_reader import Delivered

log = logging.getLogger(__name__)

#: Messages judged in one go. The batch writer's commit runs on the same event loop and each
#: of its steps (BEGIN, the locks, every COPY chunk PostgreSQL drains, COMMIT) waits for
#: whatever the reader is doing when it becomes ready; 1,000 messages were 35-40 ms of
#: judging, so a commit spent a good part of its time queued behind the reader. 100 keep
#: that wait to a few ms at no measurable cost per message.
HAND_ON_MAX = 100

TOPIC_FILTERS: tuple[str, ...] = (
    all_filter(TopicKind.TELEMETRY),
    all_filter(TopicKind.STATUS),
    all_filter(TopicKind.ACK),
)

#: Takes the messages of one read, in arrival order.
Handler = Callable[[list[Incoming]], Awaitable[None]]
#: Runs at a graceful stop, before the disconnect: commit what was read, so it can be acked.
Finisher = Callable[[], Awaitable[None]]


def topic_filters(shared_group: str | None) -> tuple[str, ...]:
    """Plain filters, or the same under ``$share/<group>/`` so N workers split the load."""
    if not shared_group:
        return TOPIC_FILTERS
    return tuple(f"$share/{shared_group}/{topic}" for topic in TOPIC_FILTERS)


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str
    port: int
    client_id: str
    username: str
    password: str | None
    keepalive: int = 30
    #: Messages held in memory before socket reads pause.
    high_water: int = 1000
    reconnect_cap: float = 30.0
    #: Shared-subscription group (Mosquitto, EMQX...); None subscribes plainly.
    shared_group: str | None = None


def _incoming(message: Delivered, received_at: datetime, ack: PahoAck | None) -> Incoming:
    return Incoming(message.topic, message.payload, received_at, message.retain, ack)


class MqttSource:
    """Reads ``ems/+/{telemetry,status,cmd/ack}`` at QoS 1 and hands each message on."""

    def __init__(self, config: MqttConfig, handler: Handler) -> None:
        self._config = config
        self._handler = handler
        self._filters = topic_filters(config.shared_group)
        #: Hand this to the batch writer as its ``on_committed``.
        self.acknowledge = Acknowledger()
        self.finish: Finisher | None = None
        self._stopping = asyncio.Event()
        self._session_end = asyncio.Event()
        self._client: FlowControlledClient | None = None
        self.connected = False
        self.on_connected: Callable[[bool], None] | None = None
        self.on_paused: Callable[[bool], None] | None = None

    @property
    def queued(self) -> int:
        return 0 if self._client is None else self._client.queued

    @property
    def paused(self) -> bool:
        return self._client is not None and self._client.paused

    @property
    def unacked(self) -> int:
        """Messages delivered on the current connection and not yet acknowledged."""
        return self.acknowledge.outstanding

    @property
    def stopping(self) -> asyncio.Event:
        """Set once ``stop`` was called."""
        return self._stopping

    def stop(self) -> None:
        """Finish the message in hand, commit and ack what was read, disconnect, return."""
        self._stopping.set()
        self._session_end.set()

    def _make_client(self) -> FlowControlledClient:
        cfg = self._config
        client = FlowControlledClient(
            cfg.host,
            cfg.port,
            username=cfg.username,
            password=cfg.password,
            identifier=cfg.client_id,
            protocol=aiomqtt.ProtocolVersion.V311,
            # The broker keeps our subscriptions and queues QoS 1 messages while we are away.
            clean_session=False,
            keepalive=cfg.keepalive,
            high_water=cfg.high_water,
        )
        enable_manual_ack(client)
        client.on_pause_change = self.on_paused
        return client

    def _set_connected(self, value: bool) -> None:
        self.connected = value
        if self.on_connected is not None:
            self.on_connected(value)

    async def run(self) -> None:
        backoff = Backoff(base=0.5, cap=self._config.reconnect_cap)
        down_since_logged = False
        while not self._stopping.is_set():
            client = self._client = self._make_client()
            self._session_end = asyncio.Event()
            try:
                async with client:
                    await self._session(client, backoff)
                    down_since_logged = False
            except* aiomqtt.MqttError as group:
                if not down_since_logged:
                    log.warning(
                        "MQTT %s:%d unavailable, retrying: %s",
                        self._config.host,
                        self._config.port,
                        group.exceptions[0],
                    )
                    down_since_logged = True
            finally:
                self._set_connected(False)
                self.acknowledge.disconnected()
                client.settle_disconnect()
            # Nothing in the queue was acknowledged: the broker delivers it again.
            client.discard_queued()
            if self._stopping.is_set():
                break
            try:
                async with asyncio.timeout(backoff.next_delay()):
                    await self._stopping.wait()
            except TimeoutError:
                pass
        log.info("MQTT ingest stopped")

    async def _session(self, client: FlowControlledClient, backoff: Backoff) -> None:
        failure: list[aiomqtt.MqttError] = []

        self.acknowledge.connected(client)

        async def subscribe() -> None:
            try:
                await client.subscribe([(topic, 1) for topic in self._filters])
            except aiomqtt.MqttError as exc:
                failure.append(exc)
                self._session_end.set()
                return
            backoff.reset()
            self._set_connected(True)
            log.info(
                "MQTT ingest subscribed on %s:%d as %s (shared group: %s)",
                self._config.host,
                self._config.port,
                self._config.client_id,
                self._config.shared_group or "none",
            )

        # Consume while subscribing: a persistent session may replay a backlog before the
        # SUBACK, and a full queue would otherwise pause the very read that brings it.
        async with asyncio.TaskGroup() as tasks:
            subscribing = tasks.create_task(subscribe(), name="ingest-mqtt-subscribe")
            limit = min(self._config.high_water, HAND_ON_MAX)
            while (messages := await client.next_batch(self._session_end, limit)) is not None:
                await self._hand_on(messages)
            subscribing.cancel()
        if failure:
            raise failure[0]
        if self._stopping.is_set():
            await self._finish(client)

    async def _hand_on(self, messages: list[Delivered]) -> None:
        # One stamp per read: these messages arrived together.
        now = datetime.now(UTC)
        handle = self.acknowledge.handle
        await self._handler([_incoming(m, now, handle(m)) for m in messages])

    async def _finish(self, client: FlowControlledClient) -> None:
        """A graceful stop: commit what was read while the link is up, so it is acked now
        rather than delivered again at the next start."""
        client.pause_reading()
        left = []
        while (message := client.take_nowait()) is not None:
            left.append(message)
        if left:
            await self._hand_on(left)
        if self.finish is not None:
            await self.finish()
