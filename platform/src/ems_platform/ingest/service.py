"""The ingest as one long-lived resource: MQTT source -> judge -> batch writer."""

from __future__ import annotations

import asyncio
import logging
import time
from types import TracebackType
from typing import Self

from ems_contract.backoff import Backoff
from ems_platform.core.db import Pool
from ems_platform.core.settings import PlatformSettings
from ems_platform.ingest.batcher import BatchWriter
from ems_platform.ingest.deltas import QualityRules
from ems_platform.ingest.envelope import Envelope, Incoming, MessageKind, Problem
from ems_platform.ingest.judge import Judge, topic_device
from ems_platform.ingest.metrics import IngestMetrics
from ems_platform.ingest.pg_store import PgReadingStore
from ems_platform.ingest.source import MqttConfig, MqttSource
from ems_platform.ingest.store import ReadingStore

log = logging.getLogger(__name__)

INTERNAL_ERROR = "internal_error"
#: A run that lasted this long before failing restarts after the shortest delay again.
RESTART_RESET_S = 60.0


def _drop_group_cancel(task: asyncio.Task[None], before: int) -> None:
    """Withdraw the cancel request a failed ``asyncio.TaskGroup`` left on ``task``.

    A TaskGroup whose child fails cancels the task waiting in it, and CPython 3.11's does not
    withdraw that request: ``Task.cancelling()`` is still 1 after the group raised (seen on
    3.11.2 and 3.11.7). 3.11.7's ``asyncio.timeout`` copes with the leftover; 3.11.2's,
    Debian 12's ``python3``, raises CancelledError instead of TimeoutError, so the restart
    wait below ended the ingest for good (tests/platform/test_ingest_restart.py). Requests
    made before the group started (``before``) stay.
    """
    while task.cancelling() > before:
        task.uncancel()


class Ingest:
    """Start with ``async with``; leaving it stops reading, then commits and acks what was read.

    An unexpected error (a bug, not an outage: those are ridden out inside) stops the reader
    and the writer together; the ingest logs it, counts it in ``ems_ingest_restarts`` and starts
    both again after a capped backoff. Nothing read was acked, so nothing is lost.

    ``shutdown_timeout`` bounds that last commit. Messages are acknowledged to the broker
    only after their commit, so whatever is still in memory when it runs out (the database
    down at shutdown, say) is delivered again at the next start, not lost.
    """

    def __init__(
        self,
        store: ReadingStore,
        mqtt: MqttConfig,
        metrics: IngestMetrics,
        *,
        batch_rows: int = 50_000,
        flush_interval: float = 0.2,
        retry_cap: float = 30.0,
        shutdown_timeout: float = 10.0,
        write_lanes: int = 2,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.judge = Judge()
        self.batcher = BatchWriter(
            store,
            metrics,
            max_rows=batch_rows,
            flush_interval=flush_interval,
            retry_cap=retry_cap,
            lanes=write_lanes,
        )
        self.source = MqttSource(mqtt, self.handle_many)
        self.source.on_connected = lambda up: metrics.mqtt_connected.set(1 if up else 0)
        self.source.on_paused = lambda paused: metrics.paused.set(1 if paused else 0)
        self.source.finish = self._commit_read
        self.batcher.on_committed = self.source.acknowledge
        metrics.track_acks(self.source.acknowledge)
        self._batcher_task: asyncio.Task[None] | None = None
        self._shutdown_timeout = shutdown_timeout
        self._restart_cap = retry_cap
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self.source.connected

    @property
    def store_healthy(self) -> bool:
        """False while writes or reads of the database are failing and being retried."""
        return self.batcher.healthy

    @property
    def healthy(self) -> bool:
        return self.source.connected and self.store_healthy

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="ingest")
        self._task.add_done_callback(self._ended)
        return self

    @staticmethod
    def _ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("ingest stopped on an error", exc_info=task.exception())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self.source.stop()
        try:
            async with asyncio.timeout(self._shutdown_timeout):
                await asyncio.wait({task})
        except TimeoutError:
            log.error(
                "ingest did not finish in %.0f s; %d messages not stored yet (the broker "
                "delivers them again at the next start)",
                self._shutdown_timeout,
                self.batcher.pending + self.source.queued,
            )
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        backoff = Backoff(base=1.0, cap=self._restart_cap)
        me = asyncio.current_task()
        assert me is not None
        while True:
            started = time.monotonic()
            cancelling = me.cancelling()
            try:
                await self._run_once()
                return
            except Exception as exc:
                _drop_group_cancel(me, cancelling)
                if self.source.stopping.is_set():
                    raise
                if time.monotonic() - started > RESTART_RESET_S:
                    backoff.reset()  # a failure long after the last one starts afresh
                delay = backoff.next_delay()
                self.metrics.restarts.inc()
                log.error("ingest stopped on an error; restarting in %.1f s", delay, exc_info=exc)
            self.batcher.reset()
            try:
                async with asyncio.timeout(delay):
                    await self.source.stopping.wait()
                return
            except TimeoutError:
                log.info("ingest restarting")

    async def _run_once(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            self._batcher_task = tasks.create_task(self.batcher.run(), name="ingest-batcher")
            tasks.create_task(self._read(), name="ingest-mqtt")

    async def _commit_read(self) -> None:
        """At a graceful stop, before the disconnect: commit everything read, which acks it."""
        await self.batcher.close()
        if self._batcher_task is not None:
            await asyncio.wait({self._batcher_task})

    async def _read(self) -> None:
        try:
            await self.source.run()
        finally:
            # Whatever the source read is in the batcher now; let it commit that and end.
            await self.batcher.close()

    async def handle(self, incoming: Incoming) -> None:
        """Judge one message and queue it for the next batch; waits when batches back up."""
        await self.handle_many([incoming])

    async def handle_many(self, incomings: list[Incoming]) -> None:
        """Judge messages read together and queue them, in order, for the next batches."""
        envelopes = [self._judged(incoming) for incoming in incomings]
        counter = self.metrics.messages.labels
        kinds: dict[MessageKind, int] = {}
        for envelope in envelopes:
            kinds[envelope.kind] = kinds.get(envelope.kind, 0) + 1
        for kind, count in kinds.items():
            counter(kind=kind.value).inc(count)
        self.metrics.queue_depth.set(self.source.queued)
        await self.batcher.add_many(envelopes)

    def _judged(self, incoming: Incoming) -> Envelope:
        try:
            return self.judge.judge(incoming)
        except Exception as exc:
            # One message must never stop the ingest; keep it, with what went wrong.
            log.exception("could not judge a message on %s", incoming.topic)
            parsed = topic_device(incoming.topic)
            return Envelope(
                incoming,
                MessageKind.OTHER,
                None if parsed is None else parsed[0],
                problems=[Problem(INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:1000])],
            )


def build_ingest(pool: Pool, settings: PlatformSettings, metrics: IngestMetrics) -> Ingest:
    """The ingest as ``ems platform`` runs it, from its settings."""
    password = settings.service_token
    mqtt = MqttConfig(
        host=settings.mqtt_host,
        port=settings.mqtt_port,
        client_id=settings.ingest_client_id,
        username=settings.ingest_username,
        password=None if password is None else password.get_secret_value(),
        keepalive=settings.ingest_keepalive_s,
        high_water=settings.ingest_queue_size,
        reconnect_cap=settings.reconnect_max_s,
        shared_group=settings.ingest_shared_group,
    )
    return Ingest(
        PgReadingStore(pool, QualityRules(settings.quality_max_kw, settings.quality_clock_skew_s)),
        mqtt,
        metrics,
        batch_rows=settings.ingest_batch_rows,
        write_lanes=settings.ingest_write_lanes,
        flush_interval=settings.ingest_flush_ms / 1000,
        retry_cap=settings.reconnect_max_s,
    )
