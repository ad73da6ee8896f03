"""benchmarks.mqtt_read_bench reads real PUBLISH bytes through a socket pair both ways (the
second with the ingest's own FlowControlledClient) and checks what came out; here with few
messages, for correctness only."""

from __future__ import annotations

from benchmarks.mqtt_read_bench import bulk, per_packet, stream, timed


def test_both_ways_read_every_message_in_order() -> None:
    data = stream(3_000)
    for way in (per_packet, bulk):
        # timed() raises SystemExit unless all 3,000 came out in order.
        assert timed(way, data, 3_000) > 0
