"""Debug logging: set_debug(True, log=...) tells the connection steps and every packet with
its type, packet id and reason code; it is off by default and costs no output then."""

from __future__ import annotations

import asyncio

from netutil import ScriptedBroker

from mqtt_v5 import _server_codec as codec
from mqtt_v5.client import ConnectOptions, MqttClient, ReconnectConfig, set_debug
from mqtt_v5.errors import PublishFailed


async def conversation():
    """One scripted session touching every kind of packet; returns nothing."""
    async with ScriptedBroker() as broker:
        c = MqttClient(ConnectOptions("dbg", reconnect_config=ReconnectConfig(enabled=False)))
        task = asyncio.create_task(c.connect(broker.url))
        conn = await broker.accept()
        await conn.expect(codec.CONNECT)
        await conn.send_packet(codec.Connack(0))
        await asyncio.wait_for(task, 2)

        task = asyncio.create_task(c.subscribe("d/#", lambda m: None, qos=1))
        sub = await conn.expect(codec.SUBSCRIBE)
        await conn.send_packet(codec.SubAck(codec.SUBACK, sub.packet_id, [1]))
        await asyncio.wait_for(task, 2)

        await conn.send_packet(codec.Publish("d/in", b"hello", qos=1, packet_id=42))
        assert (await conn.expect(codec.PUBACK)).packet_id == 42

        task = asyncio.create_task(c.publish("d/out", b"x", qos=2))
        pub = await conn.expect(codec.PUBLISH)
        await conn.send_packet(codec.Ack(codec.PUBREC, pub.packet_id))
        await conn.expect(codec.PUBREL)
        await conn.send_packet(codec.Ack(codec.PUBCOMP, pub.packet_id))
        await asyncio.wait_for(task, 2)

        task = asyncio.create_task(c.publish("d/out", b"y", qos=1))
        pub2 = await conn.expect(codec.PUBLISH)
        await conn.send_packet(codec.Ack(codec.PUBACK, pub2.packet_id, 0x97))
        try:
            await asyncio.wait_for(task, 2)
        except PublishFailed:
            pass
        await c.disconnect()
        await conn.expect(codec.DISCONNECT)
    return pub.packet_id, pub2.packet_id


async def test_debug_log_shows_steps_and_packets():
    lines = []
    set_debug(True, log=lines.append)
    try:
        pid2, pid1 = await conversation()
    finally:
        set_debug(False)
    text = "\n".join(lines) + "\n"
    assert all(line.startswith("mqtt_v5: ") for line in lines)
    expected = [
        "CONNECT client_id='dbg'",
        "-> CONNECT",
        "<- CONNACK rc=0x00 session_present=False",
        "-> SUBSCRIBE",
        "<- SUBACK pid=1 codes=[1]",
        "<- PUBLISH topic=b'd/in' qos=1 pid=42",
        "-> PUBACK (4 bytes) pid=42",
        f"-> PUBLISH (13 bytes) pid={pid2}",
        f"<- PUBREC pid={pid2} rc=0x00",
        f"-> PUBREL (4 bytes) pid={pid2}",
        f"<- PUBCOMP pid={pid2} rc=0x00",
        f"<- PUBACK pid={pid1} rc=0x97",
        "-> DISCONNECT (2 bytes)\n",
    ]
    pos = 0
    for want in expected:  # in this order
        i = text.find(want, pos)
        assert i >= 0, f"{want!r} missing (after position {pos}) in:\n{text}"
        pos = i + len(want)


async def test_debug_is_off_by_default_and_can_be_turned_off(capsys):
    lines = []
    await conversation()  # default: nothing printed
    assert capsys.readouterr().out == ""
    set_debug(True, log=lines.append)
    set_debug(False)
    await conversation()
    assert lines == []
    assert capsys.readouterr().out == ""
