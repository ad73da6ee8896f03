"""MQTT ingest: broker messages -> judged envelopes -> batched, idempotent database writes."""
