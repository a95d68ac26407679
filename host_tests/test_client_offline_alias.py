"""Issue 8 item 8, through the public API: a ``PublishOptions(topic_alias=...)`` given while
the client is offline is kept with the queued message and goes out with it after the
reconnect, within the new server's Topic Alias Maximum (a scripted broker reads the
PUBLISH: Mosquitto would resolve the alias and not show it)."""

import asyncio

from netutil import ScriptedBroker

from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P
from mqtt_v5.client import ConnectOptions, MqttClient, PublishOptions, ReconnectConfig

FAST = ReconnectConfig(initial_delay=0.05, max_delay=0.2, jitter=0)


async def _connack(conn, alias_max):
    await conn.expect(codec.CONNECT)
    await conn.send_packet(codec.Connack(0, False, {P.PROP_TOPIC_ALIAS_MAXIMUM: alias_max}))


async def test_a_queued_publish_keeps_its_topic_alias():
    async with ScriptedBroker() as broker:
        c = MqttClient(ConnectOptions("alias-q", connect_timeout=3, reconnect_config=FAST))
        task = asyncio.create_task(c.connect(broker.url))
        conn = await broker.accept()
        await _connack(conn, 4)
        await asyncio.wait_for(task, 3)
        conn.close()  # the link drops: what is published now waits in the offline queue
        for _ in range(100):
            if not c.is_connected:
                break
            await asyncio.sleep(0.01)
        assert not c.is_connected
        pub = asyncio.create_task(
            c.publish("alias/queued", b"x", qos=1, options=PublishOptions(topic_alias=2)))
        conn = await broker.accept()
        await _connack(conn, 4)
        p = await conn.expect(codec.PUBLISH)
        assert p.properties.get(P.PROP_TOPIC_ALIAS) == 2, p
        assert p.topic == "alias/queued"  # an alias is set up with its topic name first
        await conn.send_packet(codec.Ack(codec.PUBACK, p.packet_id))
        assert await asyncio.wait_for(pub, 3) == p.packet_id
        await c.disconnect()
