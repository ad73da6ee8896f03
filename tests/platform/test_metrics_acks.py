"""/metrics shows ack-after-commit at work: a message is acked only once it is stored."""

from __future__ import annotations

import aiomqtt
import httpx

from tests.platform.loadgen import eventually
from tests.platform.payloads import encode, sample
from tests.support.mosquitto import MosquittoBroker
from tests.support.platform import RunningPlatform


async def test_metrics_report_acks_sent_after_commit_and_no_backlog(
    platform_server: RunningPlatform, mosquitto_broker: MosquittoBroker
) -> None:
    async with httpx.AsyncClient(base_url=platform_server.base_url) as http:

        async def connected() -> bool:
            return platform_server.ingest_connected

        await eventually(connected)
        async with aiomqtt.Client(
            mosquitto_broker.host, mosquitto_broker.port, identifier="metrics-dev"
        ) as dev:
            for n in range(3):
                await dev.publish("ems/metrics-dev/telemetry", encode(sample(n)), qos=1)

        async def acked() -> bool:
            text = (await http.get("/metrics")).text
            return 'ems_ingest_acks{result="sent"} 3.0' in text

        await eventually(acked)
        text = (await http.get("/metrics")).text
    assert "ems_ingest_unacked 0.0" in text
    assert "ems_ingest_samples_stored_total 9.0" in text
    assert "ems_ingest_mqtt_paused 0.0" in text
    # The scheduled collector is wired in (idle here: automatic collection stays on in tests).
    assert "ems_ingest_gc_collections 0.0" in text
