"""The adapter's single broker connection, feeding every message to the hub."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence

import aiomqtt

from ems_contract.backoff import Backoff
from ems_dashboard_ws.settings import DashboardSettings

logger = logging.getLogger(__name__)

MessageSink = Callable[[str, bytes, bool], None]


class SubscriptionRefused(aiomqtt.MqttError):
    """The broker accepted the login but not the subscription (an ACL without read)."""


def _refused(granted: Sequence[object]) -> bool:
    # SUBACK return codes of 0x80 and above are failures, in MQTT 3.1.1 and 5 alike.
    return any(int(getattr(code, "value", code)) >= 0x80 for code in granted)  # type: ignore[call-overload]


def _as_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if payload is None:
        return b""
    return str(payload).encode("utf-8")


class MqttLink:
    """Keeps one subscription to the broker alive, reconnecting with capped jittered backoff.

    ``on_connect`` runs before the subscription is made, so the hub can drop its retained
    cache just before the broker resends the current retained set.
    """

    def __init__(
        self,
        settings: DashboardSettings,
        sink: MessageSink,
        *,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self._settings = settings
        self._sink = sink
        self._on_connect = on_connect
        self._backoff = Backoff(base=settings.mqtt_backoff_initial, cap=settings.mqtt_backoff_max)
        # A unique client id per process: two adapters must not take over each other.
        self.client_id = f"ems-dashboard-{uuid.uuid4().hex[:12]}"
        self.connected = asyncio.Event()
        self.connections = 0

    def _client(self) -> aiomqtt.Client:
        s = self._settings
        return aiomqtt.Client(
            hostname=s.mqtt_host,
            port=s.mqtt_port,
            username=s.mqtt_username,
            password=s.service_token.get_secret_value(),
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V311,
            clean_session=True,
            keepalive=30,
            timeout=10,
        )

    def _deliver(self, message: aiomqtt.Message) -> None:
        try:
            self._sink(message.topic.value, _as_bytes(message.payload), message.retain)
        except Exception:
            # One message the hub cannot handle must not take every browser's feed down.
            logger.exception("failed to route a message on %s", message.topic.value)

    async def run(self) -> None:
        """Run until cancelled; broker outages are logged and retried, never raised."""
        s = self._settings
        while True:
            try:
                async with self._client() as client:
                    if self._on_connect is not None:
                        self._on_connect()
                    granted = await client.subscribe(s.mqtt_subscription, qos=1)
                    if _refused(granted):
                        raise SubscriptionRefused(
                            f"broker refused {s.mqtt_subscription!r} to {s.mqtt_username!r}"
                        )
                    self.connections += 1
                    self.connected.set()
                    self._backoff.reset()
                    logger.info(
                        "subscribed to %s on %s:%d as %s",
                        s.mqtt_subscription,
                        s.mqtt_host,
                        s.mqtt_port,
                        self.client_id,
                    )
                    async for message in client.messages:
                        self._deliver(message)
            except aiomqtt.MqttError as exc:
                self.connected.clear()
                delay = self._backoff.next_delay()
                logger.warning(
                    "broker link %s:%d down (%s); retrying in %.1f s",
                    s.mqtt_host,
                    s.mqtt_port,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
            except BaseException:
                self.connected.clear()
                raise
