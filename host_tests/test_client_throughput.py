"""Throughput sanity (not a timing assertion: rates are for tools/bench_client.py): 10,000
QoS 1 messages, stop-and-wait and pipelined, all acknowledged and all received, in order, by
an independent subscriber (paho) and by a second MqttClient."""

from __future__ import annotations

import asyncio

import pytest
from client_kit import Paho, unique, url, wait_until

from mqtt_v5.client import ConnectOptions, MqttClient, ReconnectConfig

pytestmark = [pytest.mark.broker, pytest.mark.slow]

N = 10_000


async def _run(mosquitto, pipelined):
    topic = unique("tput")
    paho = Paho(mosquitto.plain_port).connect()
    paho.subscribe(topic, qos=1)
    rx = MqttClient(ConnectOptions(unique("rx"), receive_maximum=64,
                                   reconnect_config=ReconnectConfig(enabled=False)))
    await rx.connect(url(mosquitto))
    got = []
    await rx.subscribe(topic, lambda m: got.append(int(m.payload)), qos=1)
    tx = MqttClient(ConnectOptions(unique("tx"), max_inflight=64,
                                   reconnect_config=ReconnectConfig(enabled=False)))
    await tx.connect(url(mosquitto))
    try:
        if pipelined:
            deliveries = [await tx.begin_publish(topic, b"%d" % i, qos=1) for i in range(N)]
            pids = await asyncio.wait_for(asyncio.gather(*(d.wait() for d in deliveries)), 60)
        else:
            pids = [await tx.publish(topic, b"%d" % i, qos=1) for i in range(N)]
        assert all(pids)
        await wait_until(lambda: len(got) >= N, timeout=30, what=f"{N} messages at rx")
        msgs = await paho.wait_messages(N, timeout=30)
    finally:
        paho.disconnect()
    assert got == list(range(N))  # one publisher, one topic, QoS 1: in order, no loss
    assert [int(m.payload) for m in msgs] == list(range(N))
    await tx.disconnect()
    await rx.disconnect()


async def test_10k_qos1_stop_and_wait(mosquitto):
    await _run(mosquitto, pipelined=False)


async def test_10k_qos1_pipelined(mosquitto):
    await _run(mosquitto, pipelined=True)
