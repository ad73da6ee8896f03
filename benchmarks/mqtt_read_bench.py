"""CPU per message of the ingest's MQTT read path alone: socket bytes to batches of messages.

``uv run python -m benchmarks.mqtt_read_bench [--messages N] [--rounds R]`` writes N QoS 1
PUBLISH packets carrying the load generator's 3-phase sample (``benchmarks.ingest_load``'s
bytes, 500 device topics) into one end of a socket pair and reads them at the other with the
ingest's own parts: a paho client with ``PacketReader`` installed and a ``FlowQueue``,
handed on in batches of ``HAND_ON_MAX`` (100) as ``MqttSource`` does. No broker, no event
loop, no database. Two ways of reading are timed, interleaved, R rounds each:

- ``per packet``: one ``loop_read`` per packet, each decoded PUBLISH put on the queue on its
  own and taken off one ``get_nowait`` at a time (the ingest before 2026-11-24's change);
- ``bulk``: what ``FlowControlledClient`` does now: one ``loop_read`` reads the socket and
  handles the first packet, ``PacketReader.take_publishes`` decodes the rest of the read in
  one call, ``FlowQueue.put_many`` / ``take_many`` move them in and out at once.

Printed: the reading thread's CPU time (user + system, so ``recv`` counts) per message, the
fastest and the median round of each, and their ratio. Every round checks that all N
messages came out, in order.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.judge_bench import single
from benchmarks.mqtt_wire import remaining_length
from ems_platform.ingest.flow_client import FlowQueue
from ems_platform.ingest.packet_reader import PacketReader
from ems_platform.ingest.source import HAND_ON_MAX

DEVICES = 500


def publish(topic: bytes, payload: bytes, mid: int) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic + mid.to_bytes(2, "big") + payload
    return bytes([0x32]) + remaining_length(len(body)) + body  # PUBLISH, QoS 1


def stream(messages: int) -> bytes:
    payload = single(1)
    return b"".join(
        publish(b"ems/bench-%05d/telemetry" % (i % DEVICES), payload, i % 65535 + 1)
        for i in range(messages)
    )


class Link:
    """A socket pair, the ingest's reader on one end."""

    def __init__(self) -> None:
        # Blocking, unlike the ingest's: a read that finds nothing waits for the writer
        # thread instead of spinning, which would count as CPU.
        self.ours, self.peer = socket.socketpair()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client._sock = self.ours
        self.queue = FlowQueue()
        self.queue.high_water, self.queue.low_water = 10**9, 0
        self.reader = PacketReader(self.client, self.queue.put_nowait)
        self.reader.install()

    def close(self) -> None:
        self.ours.close()
        self.peer.close()


def per_packet(link: Link, expected: int) -> list[int]:
    mids: list[int] = []
    client, reader, queue = link.client, link.reader, link.queue
    while len(mids) < expected:
        while True:
            client.loop_read()
            if not reader.has_packet():
                break
        while True:
            try:
                batch = [queue.get_nowait()]
            except asyncio.QueueEmpty:
                break
            while len(batch) < HAND_ON_MAX:
                try:
                    batch.append(queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            mids.extend(m.mid for m in batch)
    return mids


def bulk(link: Link, expected: int) -> list[int]:
    mids: list[int] = []
    client, reader, queue = link.client, link.reader, link.queue
    while len(mids) < expected:
        while True:
            client.loop_read()
            queue.put_many(reader.take_publishes(queue.high_water - queue.qsize()))
            if not reader.has_packet():
                break
        while True:
            try:
                batch = [queue.get_nowait()]
            except asyncio.QueueEmpty:
                break
            batch += queue.take_many(HAND_ON_MAX - 1)
            mids.extend(m.mid for m in batch)
    return mids


def timed(read: Callable[[Link, int], list[int]], data: bytes, messages: int) -> float:
    """CPU µs per message of one round: the reading thread's, not the writer's."""
    link = Link()
    # Written from a second thread: the socket buffer holds less than a round's bytes.
    sender = threading.Thread(target=link.peer.sendall, args=(data,))
    try:
        sender.start()
        started = time.thread_time()
        mids = read(link, messages)
        took = time.thread_time() - started
        sender.join()
    finally:
        link.close()
    if mids != [i % 65535 + 1 for i in range(messages)]:
        raise SystemExit(
            f"{read.__name__}: {len(mids)} messages out of {messages}, or out of order"
        )
    return took / messages * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join((__doc__ or "").split("\n\n")[1:]),
    )
    parser.add_argument("--messages", type=int, default=20_000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of each way")
    args = parser.parse_args()
    data = stream(args.messages)
    results: dict[str, list[float]] = {"per packet": [], "bulk": []}
    for _ in range(args.rounds):
        results["per packet"].append(timed(per_packet, data, args.messages))
        results["bulk"].append(timed(bulk, data, args.messages))
    print(f"MQTT read path, CPU µs per message ({args.messages} messages x {args.rounds} rounds)")
    for name, values in results.items():
        print(f"  {name:10s} fastest {min(values):6.2f}   median {statistics.median(values):6.2f}")
    ratio = statistics.median(results["bulk"]) / statistics.median(results["per packet"])
    print(f"  bulk / per packet (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
