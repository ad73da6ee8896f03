"""Prometheus metrics of the ingest, on a registry owned by the app (never the global one)."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ems_platform.core.gc_tuning import Collector
from ems_platform.ingest.acks import Acknowledger
from ems_platform.ingest.envelope import Envelope, MessageKind, Verdict

_BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.messages = Counter(
            "ems_ingest_messages",
            "MQTT messages received, by kind",
            ["kind"],
            registry=registry,
        )
        self.samples_stored = Counter(
            "ems_ingest_samples_stored", "energy_readings rows stored", registry=registry
        )
        self.duplicates = Counter(
            "ems_ingest_duplicates",
            "readings already stored (redeliveries, replays)",
            registry=registry,
        )
        self.quarantined = Counter(
            "ems_ingest_quarantined",
            "rejected messages or samples, by reason",
            ["reason"],
            registry=registry,
        )
        self.batch_rows = Histogram(
            "ems_ingest_batch_rows",
            "rows per committed transaction (one write lane's part of a batch)",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.commit_seconds = Histogram(
            "ems_ingest_commit_seconds",
            "time to commit one transaction (one write lane's part of a batch)",
            registry=registry,
        )
        self.write_failures = Counter(
            "ems_ingest_write_failures",
            "batch writes that failed and were retried",
            registry=registry,
        )
        self.restarts = Counter(
            "ems_ingest_restarts",
            "times the ingest stopped on an unexpected error and was started again",
            registry=registry,
        )
        self.queue_depth = Gauge(
            "ems_ingest_queue_depth", "messages read from MQTT, not yet judged", registry=registry
        )
        self.mqtt_connected = Gauge(
            "ems_ingest_mqtt_connected", "1 while the ingest is subscribed", registry=registry
        )
        self.paused = Gauge(
            "ems_ingest_mqtt_paused",
            "1 while MQTT reads are paused for backpressure",
            registry=registry,
        )
        self.unacked = Gauge(
            "ems_ingest_unacked",
            "messages delivered on the current MQTT connection, not yet committed and acked",
            registry=registry,
        )
        self.acks = Gauge(
            "ems_ingest_acks",
            "PUBACKs sent after commit (sent: on the delivering connection; stale: that "
            "connection was gone, so the broker redelivers and the copy counts as a duplicate)",
            ["result"],
            registry=registry,
        )
        self.gc_collections = Gauge(
            "ems_ingest_gc_collections",
            "scheduled full garbage collections so far (automatic collection is off in the "
            "ingest process; EMS_INGEST_GC_INTERVAL_S)",
            registry=registry,
        )
        self.gc_pause = Gauge(
            "ems_ingest_gc_pause_seconds",
            "time the event loop spent in those collections, in all",
            registry=registry,
        )
        for kind in MessageKind:
            self.messages.labels(kind=kind.value)

    def track_acks(self, acks: Acknowledger) -> None:
        """Read the ack counts when scraped, so the hot path updates nothing for them."""
        self.unacked.set_function(lambda: acks.outstanding)
        self.acks.labels(result="sent").set_function(lambda: acks.acked)
        self.acks.labels(result="stale").set_function(lambda: acks.stale)

    def track_gc(self, collector: Collector) -> None:
        """Read the scheduled collector's totals when scraped."""
        self.gc_collections.set_function(lambda: collector.collections)
        self.gc_pause.set_function(lambda: collector.seconds)

    def value(self, name: str, **labels: str) -> float:
        """A sample's current value, 0 if never set (for tests and diagnostics)."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def committed(self, batch: Sequence[Envelope], stored: Sequence[int], seconds: float) -> None:
        # One pass: this runs for every message of every batch.
        rows = conflicts = 0
        for env, n in zip(batch, stored, strict=True):
            rows += len(env.rows)
            if env.problems or env.conflicts:  # otherwise accepted or duplicate
                conflicts += len(env.conflicts)
                if env.verdict(n) in (Verdict.QUARANTINED, Verdict.PARTIAL):
                    for problem in env.rejections:
                        self.quarantined.labels(reason=problem.reason).inc()
        new = sum(stored)
        self.samples_stored.inc(new)
        self.duplicates.inc(rows - new - conflicts)
        self.batch_rows.observe(rows)
        self.commit_seconds.observe(seconds)
