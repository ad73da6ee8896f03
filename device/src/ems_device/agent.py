"""The device agent: sampler -> SQLite outbox -> MQTT, plus commands and a retained status.

``Agent`` is an async context manager; its background loops run in one TaskGroup with
named tasks (``mqtt``, ``sampler``, ``publisher``, ``housekeeping``). Stopping is orderly:
sampling stops, a retained ``offline``/``shutdown`` status is published and acknowledged,
then DISCONNECT (so the broker discards the last will).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import sqlite3
from types import TracebackType
from typing import Any

from ems_contract import (
    Status,
    ack_topic,
    command_topic,
    encode,
    last_will,
    status_topic,
    telemetry_topic,
)
from ems_device import AGENT_NAME
from ems_device.clock import Clock, SystemClock
from ems_device.commands import CommandHandler, CommandMemory
from ems_device.components import build_meter, build_relay
from ems_device.db import DeviceDb
from ems_device.meter.base import Meter
from ems_device.mqtt import LinkConfig, MqttLink
from ems_device.outbox import Outbox
from ems_device.publisher import Publisher
from ems_device.relay import Relay, RelayError
from ems_device.sampler import Sampler
from ems_device.settings import DeviceSettings

log = logging.getLogger(__name__)

HOUSEKEEPING_S = 60.0
GOODBYE_TIMEOUT_S = 5.0
RELAYS_KEY = "relays"


class AgentError(RuntimeError):
    """The agent was used out of order (e.g. started twice)."""


class Agent:
    def __init__(
        self,
        settings: DeviceSettings,
        *,
        meter: Meter | None = None,
        relay: Relay | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.device_id = settings.device_id
        #: Changes on every start, so the platform can tell a restart from a gap.
        self.boot = secrets.token_hex(4)
        self._clock = clock or SystemClock()
        self._given_meter = meter
        self._given_relay = relay
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._status_backlog = 0
        self._topics = {
            "telemetry": telemetry_topic(self.device_id),
            "status": status_topic(self.device_id),
            "cmd": command_topic(self.device_id),
            "ack": ack_topic(self.device_id),
        }

    # -- lifecycle --

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        if self._task is not None:
            raise AgentError("agent already started")
        settings = self.settings
        self.db = DeviceDb(settings.db_path)
        meter: Meter | None = self._given_meter
        try:
            self.outbox = Outbox(self.db)
            if meter is None:
                meter = await asyncio.to_thread(build_meter, settings, self.db, self._clock)
            self.meter = meter
            self.relay = self._given_relay or build_relay(settings, meter)
            self._restore_relays()
        except BaseException:
            if meter is not None:
                meter.close()
            self.db.close()
            raise
        token = settings.device_token.get_secret_value() if settings.device_token else None
        self.link = MqttLink(
            LinkConfig(
                host=settings.mqtt_host,
                port=settings.mqtt_port,
                client_id=self.device_id,
                username=self.device_id,
                password=token,
                will_topic=self._topics["status"],
                will_payload=encode(last_will()),
                keepalive=settings.mqtt_keepalive,
                tls=settings.mqtt_tls,
                ca_file=settings.mqtt_ca_file,
                # Room for status and acks beside a full telemetry window.
                max_inflight=settings.device_max_inflight + 12,
                reconnect_min=settings.device_reconnect_min,
                reconnect_max=settings.device_reconnect_max,
            ),
            listener=self,
        )
        self.publisher = Publisher(
            self.outbox,
            self.link,
            self._topics["telemetry"],
            window=settings.device_max_inflight,
            batch_min=settings.device_batch_min,
            on_acked=self._on_acked,
        )
        self.sampler = Sampler(
            self.meter,
            self.outbox,
            self._clock,
            self.boot,
            settings.device_interval,
            on_sample=self.publisher.wake,
        )
        self.commands = CommandHandler(
            CommandMemory(self.db), self.relay, self._clock, self.sampler.set_interval, self._info
        )
        self._task = asyncio.create_task(self._run(), name=f"ems-device-{self.device_id}")
        log.info(
            "agent %s started (boot %s, %s meter, %d buffered samples)",
            self.device_id,
            self.boot,
            settings.device_meter if self._given_meter is None else type(self.meter).__name__,
            len(self.outbox),
        )

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self.link.run(), name="mqtt")
            workers = [
                group.create_task(self.sampler.run(), name="sampler"),
                group.create_task(self.publisher.run(), name="publisher"),
                group.create_task(self._housekeeping(), name="housekeeping"),
            ]
            await self._stop.wait()
            for task in workers:
                task.cancel()
            await asyncio.wait(workers)
            await self._say_goodbye()
            await self.link.close()

    async def wait(self, stop: asyncio.Event) -> None:
        """Return when ``stop`` is set or the agent's tasks end on their own (a failure)."""
        if self._task is None:
            raise AgentError("agent not started")
        stopper = asyncio.create_task(stop.wait(), name="stop-signal")
        try:
            await asyncio.wait({stopper, self._task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()

    async def stop(self) -> None:
        if self._task is None:
            return
        self._stop.set()
        try:
            await self._task
        finally:
            await asyncio.to_thread(self.meter.close)
            self.db.close()
            log.info("agent %s stopped (%d samples buffered)", self.device_id, len(self.outbox))

    async def _say_goodbye(self) -> None:
        if not self.link.connected:
            return
        status = Status(v=1, state="offline", ts=self._clock.now(), reason="shutdown")
        if not await self.link.publish_confirmed(
            self._topics["status"], encode(status), retain=True, wait_s=GOODBYE_TIMEOUT_S
        ):
            log.warning("the offline status was not acknowledged before shutdown")

    async def _housekeeping(self) -> None:
        memory = CommandMemory(self.db)
        while True:
            now = self._clock.now().timestamp()
            try:
                self.outbox.prune(
                    now, self.settings.retention_s, self.settings.device_outbox_max_rows
                )
                memory.prune(now)
            except sqlite3.Error as exc:
                log.error("outbox housekeeping failed: %s", exc)
            await asyncio.sleep(HOUSEKEEPING_S)

    # -- observable state --

    @property
    def connected(self) -> bool:
        return self.link.connected

    @property
    def backlog(self) -> int:
        return len(self.outbox)

    @property
    def interval(self) -> float:
        return self.sampler.interval

    # -- link events (event-loop thread) --

    def link_up(self) -> None:
        self.link.subscribe(self._topics["cmd"], qos=1)
        self.publish_status()
        self.publisher.wake()

    def link_down(self) -> None:
        if not self._stop.is_set():
            log.info("sampling continues into the outbox (%d buffered)", len(self.outbox))

    def published(self, mid: int) -> None:
        self.publisher.on_published(mid)

    def message(self, topic: str, payload: bytes) -> None:
        if topic != self._topics["cmd"]:
            log.debug("ignoring a message on %s", topic)
            return
        outcome = self.commands.handle(payload)
        if outcome.payload is not None:
            self.link.publish(self._topics["ack"], outcome.payload, qos=1)
        if outcome.state_changed:
            self._save_relays()
            self.publish_status()

    def publish_status(self) -> None:
        # Once stopping, the goodbye's offline status must stay the last (retained) one: a
        # telemetry PUBACK, a command or a reconnect arriving while it is sent must not put
        # "online" back on the broker behind it (the clean DISCONNECT drops the last will).
        if self._stop.is_set():
            log.debug("stopping: not republishing the online status")
            return
        try:
            relays = self.relay.states()
        except RelayError as exc:
            log.warning("relay state unknown: %s", exc)
            relays = None
        backlog = len(self.outbox)
        status = Status(
            v=1,
            state="online",
            ts=self._clock.now(),
            boot=self.boot,
            agent=AGENT_NAME,
            relays=relays,
            backlog=backlog,
            interval=self.sampler.interval,
        )
        mid = self.link.publish(self._topics["status"], encode(status), qos=1, retain=True)
        if mid is not None:
            self._status_backlog = backlog

    def _on_acked(self, backlog: int) -> None:
        # Tell the platform once the replay after a reconnect has drained.
        if backlog == 0 and self._status_backlog > 0:
            self.publish_status()

    def _info(self) -> dict[str, Any]:
        return {
            "boot": self.boot,
            "seq": self.sampler.next_seq,
            "backlog": len(self.outbox),
            "interval": self.sampler.interval,
            "agent": AGENT_NAME,
        }

    # -- relay persistence: a commanded state survives an agent restart --

    def _restore_relays(self) -> None:
        saved = self.db.get_state(RELAYS_KEY)
        if not isinstance(saved, dict):
            return
        current = self.relay.states()
        for phase, on in saved.items():
            if phase in current and current[phase] != bool(on):
                log.info("restoring relay %s to %s", phase, "on" if on else "off")
                self.relay.set(phase, bool(on))

    def _save_relays(self) -> None:
        try:
            self.db.set_state(RELAYS_KEY, self.relay.states())
        except RelayError as exc:
            log.warning("cannot record relay state: %s", exc)


async def serve(settings: DeviceSettings, stop: asyncio.Event | None = None) -> None:
    """Run an agent until SIGINT/SIGTERM (or ``stop``), then stop it cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        async with Agent(settings) as agent:
            await agent.wait(stop)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


def run_agent(settings: DeviceSettings) -> None:
    """Blocking entry point for the ``ems`` CLI: runs until SIGINT/SIGTERM."""
    asyncio.run(serve(settings))
