"""CPU per message of the ingest's MQTT read path alone: socket bytes to batches of messages.

``uv run python -m benchmarks.mqtt_read_bench [--messages N] [--rounds R]`` writes N QoS 1
PUBLISH packets carrying the load generator's 3-phase sample (``benchmarks.ingest_load``'s
bytes, 500 device topics) into one end of a socket pair and reads them at the other with the
ingest's own parts, handed on in batches of ``HAND_ON_MAX`` (100) as ``MqttSource`` does. No
broker, no database. Two ways of reading are timed, interleaved, R rounds each:

- ``per packet``: the ingest before 2026-11-24's change, rebuilt from its parts (a paho
  client with ``PacketReader`` installed, a ``FlowQueue``): one ``loop_read`` per packet,
  each decoded PUBLISH put on the queue on its own and taken off one ``get_nowait`` at a
  time;
- ``bulk``: ``FlowControlledClient`` itself, its reader callback (``_read_ready``: one
  ``loop_read`` reads the socket and handles the first packet, ``take_publishes`` decodes
  the rest of the read, ``put_many`` queues them) and its ``next_batch``.

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
from benchmarks.mqtt_wire import publish_packet
from ems_platform.ingest.flow_client import FlowControlledClient, FlowQueue
from ems_platform.ingest.packet_reader import PacketReader
from ems_platform.ingest.source import HAND_ON_MAX

DEVICES = 500
#: Never reached: the queue must not pause reading, there is no event loop reader to resume.
HIGH_WATER = 10**9

#: Reads ``expected`` messages from the socket; returns their packet ids in arrival order.
Read = Callable[[int], list[int]]


def stream(messages: int) -> bytes:
    payload = single(1)
    return b"".join(
        publish_packet(f"ems/bench-{i % DEVICES:05d}/telemetry", i % 65535 + 1, payload)
        for i in range(messages)
    )


def per_packet(sock: socket.socket, loop: asyncio.AbstractEventLoop) -> Read:
    del loop  # no event loop in the old path's reading
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client._sock = sock
    queue = FlowQueue()
    queue.high_water, queue.low_water = HIGH_WATER, 0
    reader = PacketReader(client, queue.put_nowait)
    reader.install()

    def read(expected: int) -> list[int]:
        mids: list[int] = []
        while len(mids) < expected:
            while True:
                client.loop_read()
                if not reader.has_packet():
                    break
            while not queue.empty():
                batch = [queue.get_nowait()]
                while len(batch) < HAND_ON_MAX and not queue.empty():
                    batch.append(queue.get_nowait())
                mids.extend(m.mid for m in batch)
        return mids

    return read


def bulk(sock: socket.socket, loop: asyncio.AbstractEventLoop) -> Read:
    async def make() -> FlowControlledClient:  # aiomqtt wants a running loop
        return FlowControlledClient(
            "127.0.0.1", 1, identifier="mqtt-read-bench", high_water=HIGH_WATER
        )

    client = loop.run_until_complete(make())
    client._client._sock = sock
    client._fd = sock.fileno()  # as if the socket were open: reads happen
    end = asyncio.Event()

    async def consume(mids: list[int]) -> None:
        while client.queued:
            batch = await client.next_batch(end, HAND_ON_MAX) or []
            mids.extend(m.mid for m in batch)

    def read(expected: int) -> list[int]:
        mids: list[int] = []
        while len(mids) < expected:
            client._read_ready()
            if client._disconnected.done():
                raise SystemExit(f"bulk: reading failed: {client._disconnected.exception()}")
            loop.run_until_complete(consume(mids))
        return mids

    return read


def timed(
    way: Callable[[socket.socket, asyncio.AbstractEventLoop], Read], data: bytes, messages: int
) -> float:
    """CPU µs per message of one round: the reading thread's, not the writer's."""
    # Blocking, unlike the ingest's: a read that finds nothing waits for the writer thread
    # instead of spinning, which would count as CPU.
    ours, peer = socket.socketpair()
    loop = asyncio.new_event_loop()
    # Written from a second thread: the socket buffer holds less than a round's bytes.
    sender = threading.Thread(target=peer.sendall, args=(data,))
    try:
        read = way(ours, loop)
        sender.start()
        started = time.thread_time()
        mids = read(messages)
        took = time.thread_time() - started
        sender.join()
    finally:
        loop.close()
        ours.close()
        peer.close()
    if mids != [i % 65535 + 1 for i in range(messages)]:
        raise SystemExit(f"{way.__name__}: got {len(mids)} of {messages}, or out of order")
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
