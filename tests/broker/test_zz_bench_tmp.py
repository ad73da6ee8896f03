from __future__ import annotations
import asyncio, time, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from tests.broker.conftest import MakeToken
from tests.support.ems_broker import EmsBrokerProcess

N = 20000

async def test_bench_mosq(mosquitto_broker) -> None:
    await run(mosquitto_broker.port, "x")

async def test_bench(make_token: MakeToken, ems_broker: EmsBrokerProcess) -> None:
    token = await make_token("admin")
    await run(port, token)

async def run(port, token):
    for qos in (0, 1):
        got = 0
        done = threading.Event()
        first = [0.0]
        def on_msg(c, u, m):
            nonlocal got
            got += 1
            if got == 1: first[0] = time.perf_counter()
            if got == N: done.set()
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"s{qos}", protocol=mqtt.MQTTv311)
        sub.username_pw_set("ops", token); sub.on_message = on_msg
        sub.connect("127.0.0.1", port); sub.loop_start()
        sub.subscribe("bench/#", qos); time.sleep(1)
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"p{qos}", protocol=mqtt.MQTTv311)
        pub.username_pw_set("ops", token); pub.max_inflight_messages_set(100)
        pub.connect("127.0.0.1", port); pub.loop_start(); time.sleep(0.5)
        payload = b"x" * 601
        t0 = time.perf_counter()
        for i in range(N):
            info = pub.publish(f"bench/{i % 10}", payload, qos=qos)
            if qos == 0 and i % 1000 == 0: time.sleep(0.01)
        done.wait(300)
        t1 = time.perf_counter()
        print(f"qos{qos}: received {got}/{N} in {t1-t0:.2f}s => {got/(t1-t0):.0f} msg/s")
        pub.disconnect(); pub.loop_stop(); sub.disconnect(); sub.loop_stop()
