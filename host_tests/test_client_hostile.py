"""MqttClient against a hostile or scripted broker (netutil.ScriptedBroker): every violation
must end in the DISCONNECT the spec asks for (read on the broker side), a typed error, no
hang, and bounded memory."""

from __future__ import annotations

import asyncio
import tracemalloc

import pytest
from client_kit import Recorder
from netutil import ScriptedBroker

from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P
from mqtt_v5.client import (
    Connected,
    ConnectOptions,
    Disconnected,
    MqttClient,
    ReconnectConfig,
    Reconnecting,
)
from mqtt_v5.errors import (
    ConnectRefused,
    MqttTimeout,
    ProtocolError,
    PublishFailed,
    SubscribeFailed,
)

NO_RECONNECT = ReconnectConfig(enabled=False)
FAST = ReconnectConfig(initial_delay=0.05, max_delay=0.5, jitter=0)


def make(rec=None, **kw):
    kw.setdefault("reconnect_config", NO_RECONNECT)
    kw.setdefault("connect_timeout", 2.0)
    c = MqttClient(ConnectOptions(kw.pop("client_id", "hostile"), **kw))
    if rec is not None:
        c.on_connection_event(rec)
    return c


async def accept_connect(broker, connack=None):
    conn = await broker.accept()
    connect = await conn.expect(codec.CONNECT)
    await conn.send_packet(connack if connack is not None else codec.Connack(0))
    return conn, connect


async def connected(broker, rec=None, **kw):
    c = make(rec, **kw)
    task = asyncio.create_task(c.connect(broker.url))
    conn, _ = await accept_connect(broker)
    await asyncio.wait_for(task, 2)
    return c, conn


async def disconnect_reason(conn, skip=()):
    """The reason code of the DISCONNECT the client sent before closing (packets of the
    types in ``skip`` may come first)."""
    while True:
        got = await conn.read_packet(2)
        assert got is not None, "the client closed without a DISCONNECT"
        first, _, pkt = got
        if first >> 4 not in skip:
            break
    assert first >> 4 == codec.DISCONNECT, pkt
    assert await conn.wait_closed(2)
    return pkt.reason_code


async def violation(raw, expected_rc, skip=(), **kw):
    """Connect, send ``raw`` bytes, and check the client's reaction."""
    rec = Recorder()
    async with ScriptedBroker() as broker:
        c, conn = await connected(broker, rec, **kw)
        await conn.send(raw)
        assert await disconnect_reason(conn, skip) == expected_rc
        ev = await rec.wait(Disconnected)
        assert isinstance(ev.error, ProtocolError), ev
        assert ev.error.reason_code == expected_rc
        assert not c.is_connected
        await asyncio.wait_for(c.disconnect(), 2)


# ------------------------------------------------------------------ malformed input --


async def test_remaining_length_of_five_bytes():
    await violation(b"\x30\xff\xff\xff\xff\x7f", 0x81)


async def test_remaining_length_not_minimal():
    await violation(b"\xd0\x80\x00", 0x81)  # PINGRESP with a 2-byte zero length


async def test_reserved_packet_type_0():
    await violation(b"\x00\x00", 0x81)


async def test_property_not_allowed_in_publish():
    # PUBLISH "t" carrying Session Expiry Interval (0x11), a CONNECT/CONNACK/DISCONNECT property.
    await violation(b"\x30\x0a\x00\x01t\x05\x11\x00\x00\x00\x0ax", 0x81)


async def test_topic_alias_above_our_maximum():
    # Topic Alias 9 while we announced a Topic Alias Maximum of 8 [MQTT-3.3.2-9].
    await violation(b"\x30\x08\x00\x01t\x03\x23\x00\x09x", 0x94, topic_alias_maximum=8)


async def test_unknown_topic_alias():
    await violation(b"\x30\x07\x00\x00\x03\x23\x00\x02x", 0x82)


async def test_puback_for_unknown_packet_id():
    await violation(codec.encode_bytes(codec.Ack(codec.PUBACK, 77)), 0x82)


async def test_server_sends_a_client_only_packet():
    await violation(b"\xc0\x00", 0x82)  # PINGREQ from the server


async def test_second_connack():
    await violation(codec.encode_bytes(codec.Connack(0)), 0x82)


async def test_packet_above_our_maximum_packet_size():
    big = codec.encode_bytes(codec.Publish("t", b"x" * 1000))
    await violation(big, 0x95, maximum_packet_size=256)


async def test_huge_announced_length_allocates_nothing():
    # 256 MB announced; the client must refuse from the header, never buffer or allocate it.
    rec = Recorder()
    async with ScriptedBroker() as broker:
        c, conn = await connected(broker, rec, maximum_packet_size=1024)
        # The test broker stops reading meanwhile: asyncio's own recv() would allocate
        # 256 KiB per read and hide what the client does.
        conn.writer.transport.pause_reading()
        tracemalloc.start()
        try:
            await conn.send(b"\x30\xff\xff\xff\x7f" + b"\x00\x01t" + b"x" * 100)
            ev = await rec.wait(Disconnected)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            conn.writer.transport.resume_reading()
        assert ev.error.reason_code == 0x95
        assert await disconnect_reason(conn) == 0x95
        assert peak < 50_000, peak  # the error path's small objects only
        await c.disconnect()


async def test_qos2_flood_beyond_our_receive_maximum():
    flood = b"".join(codec.encode_bytes(codec.Publish("t", b"x", qos=2, packet_id=i))
                     for i in range(1, 4))
    # The first two are acknowledged (PUBREC), the third exceeds our Receive Maximum.
    await violation(flood, 0x93, skip=(codec.PUBREC,), receive_maximum=2)


# --------------------------------------------------------------------- CONNACK side --


async def test_connack_never_comes():
    async with ScriptedBroker() as broker:
        c = make(connect_timeout=0.5)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        task = asyncio.create_task(c.connect(broker.url))
        conn = await broker.accept()
        await conn.expect(codec.CONNECT)
        with pytest.raises(MqttTimeout):
            await asyncio.wait_for(task, 3)
        assert 0.4 < loop.time() - t0 < 2
        assert await conn.wait_closed(2)
        assert not c.is_connected


@pytest.mark.parametrize("rc", [0x80, 0x85, 0x86, 0x87, 0x88, 0x8A, 0x97, 0x9C])
async def test_connack_refusal(rc):
    async with ScriptedBroker() as broker:
        c = make()
        task = asyncio.create_task(c.connect(broker.url))
        _conn, _ = await accept_connect(broker, codec.Connack(
            rc, properties={P.PROP_REASON_STRING: "go away"}))
        with pytest.raises(ConnectRefused) as e:
            await asyncio.wait_for(task, 2)
        assert e.value.reason_code == rc
        assert "go away" in str(e.value)
        assert not c.is_connected


async def test_session_present_after_clean_start_is_a_protocol_error():
    async with ScriptedBroker() as broker:
        c = make()
        task = asyncio.create_task(c.connect(broker.url))
        conn, _ = await accept_connect(broker, codec.Connack(0, session_present=True))
        with pytest.raises(ProtocolError) as e:
            await asyncio.wait_for(task, 2)
        assert e.value.reason_code == 0x82
        assert await disconnect_reason(conn) == 0x82  # [MQTT-3.2.2-4] and it says why
        # The client is usable again afterwards.
        task = asyncio.create_task(c.connect(broker.url))
        await accept_connect(broker)
        assert isinstance(await asyncio.wait_for(task, 2), Connected)
        await c.disconnect()


async def test_packet_before_connack_is_a_protocol_error():
    async with ScriptedBroker() as broker:
        c = make()
        task = asyncio.create_task(c.connect(broker.url))
        conn = await broker.accept()
        await conn.expect(codec.CONNECT)
        await conn.send_packet(codec.Publish("t", b"early"))
        with pytest.raises(ProtocolError) as e:
            await asyncio.wait_for(task, 2)
        assert e.value.reason_code == 0x82
        assert await disconnect_reason(conn) == 0x82


async def test_no_reconnect_hammering_on_a_permanent_refusal():
    rec = Recorder()
    async with ScriptedBroker() as broker:
        c, conn = await connected(broker, rec, reconnect_config=FAST)
        conn.close()  # the link drops...
        _conn2, _ = await accept_connect(broker, codec.Connack(0x8A))  # ...and we are banned
        ev = await rec.wait(Disconnected, 2)
        assert ev.reason_code == 0x8A
        assert isinstance(ev.error, ConnectRefused)
        await asyncio.sleep(0.6)  # longer than max_delay
        assert len(broker.connections) == 2  # no further attempt
        assert not c.is_connected
        await c.disconnect()


async def test_transient_refusal_is_retried():
    rec = Recorder()
    async with ScriptedBroker() as broker:
        c, conn = await connected(broker, rec, reconnect_config=FAST)
        conn.close()
        await accept_connect(broker, codec.Connack(0x88))  # Server unavailable: try again
        await accept_connect(broker, codec.Connack(0x89))  # Server busy
        await accept_connect(broker)
        await rec.wait(Connected, 2)
        assert [e.attempt for e in rec.of(Reconnecting)] == [1, 2, 3]
        await c.disconnect()


# ---------------------------------------------------------- per-operation failures --


async def test_puback_and_pubrec_refusals_raise_publish_failed():
    async with ScriptedBroker() as broker:
        c, conn = await connected(broker)
        task = asyncio.create_task(c.publish("t", b"1", qos=1))
        pub = await conn.expect(codec.PUBLISH)
        await conn.send_packet(codec.Ack(codec.PUBACK, pub.packet_id, 0x97,
                                         {P.PROP_REASON_STRING: "quota"}))
        with pytest.raises(PublishFailed) as e:
            await asyncio.wait_for(task, 2)
        assert (e.value.reason_code, e.value.packet_id) == (0x97, pub.packet_id)
        task = asyncio.create_task(c.publish("t", b"2", qos=2))
        pub = await conn.expect(codec.PUBLISH)
        await conn.send_packet(codec.Ack(codec.PUBREC, pub.packet_id, 0x87))
        with pytest.raises(PublishFailed) as e:
            await asyncio.wait_for(task, 2)
        assert e.value.reason_code == 0x87
        # The connection stays up and the next publish works.
        task = asyncio.create_task(c.publish("t", b"3", qos=1))
        pub = await conn.expect(codec.PUBLISH)
        await conn.send_packet(codec.Ack(codec.PUBACK, pub.packet_id))
        assert await asyncio.wait_for(task, 2) == pub.packet_id
        assert c.is_connected
        await c.disconnect()


async def test_suback_refusal_raises_subscribe_failed():
    async with ScriptedBroker() as broker:
        c, conn = await connected(broker)
        task = asyncio.create_task(c.subscribe("secret/#", qos=1))
        sub = await conn.expect(codec.SUBSCRIBE)
        await conn.send_packet(codec.SubAck(codec.SUBACK, sub.packet_id, [0x87]))
        with pytest.raises(SubscribeFailed) as e:
            await asyncio.wait_for(task, 2)
        assert e.value.reason_code == 0x87
        assert e.value.reason_codes == [0x87]
        task = asyncio.create_task(c.subscribe("ok/#", qos=2))
        sub = await conn.expect(codec.SUBSCRIBE)
        await conn.send_packet(codec.SubAck(codec.SUBACK, sub.packet_id, [1]))
        assert await asyncio.wait_for(task, 2) == 1  # granted QoS 1 (downgraded)
        await c.disconnect()


async def test_server_disconnect_is_reported():
    rec = Recorder()
    async with ScriptedBroker() as broker:
        c, conn = await connected(broker, rec)
        await conn.send_packet(codec.Disconnect(0x98, {P.PROP_REASON_STRING: "admin"}))
        ev = await rec.wait(Disconnected)
        assert (ev.reason_code, ev.reason_string, ev.by_server) == (0x98, "admin", True)
        assert await conn.wait_closed(2)
        await c.disconnect()


async def test_qos2_unconfirmed_when_the_server_loses_the_session():
    rec = Recorder()
    async with ScriptedBroker() as broker:
        c, conn = await connected(broker, rec, reconnect_config=FAST)
        task = asyncio.create_task(c.publish("t", b"once", qos=2))
        pub = await conn.expect(codec.PUBLISH)
        await conn.send_packet(codec.Ack(codec.PUBREC, pub.packet_id))
        await conn.expect(codec.PUBREL)
        conn.close()  # PUBCOMP never comes, and the server forgets us
        conn2, _connect = await accept_connect(broker, codec.Connack(0, session_present=False))
        with pytest.raises(PublishFailed):
            await asyncio.wait_for(task, 2)  # not a hang, and not a second PUBLISH
        await rec.wait(Connected, 2)
        await asyncio.sleep(0.05)
        assert not [p for p in conn2.received if p[0] >> 4 == codec.PUBLISH]
        await c.disconnect()


async def test_resends_after_reconnect_with_session():
    """Session present: unacknowledged PUBLISH goes again with DUP and the same id, and an
    outstanding PUBREL is repeated [MQTT-4.4.0-1]."""
    rec = Recorder()
    async with ScriptedBroker() as broker:
        c, conn = await connected(broker, rec, reconnect_config=FAST,
                                  session_expiry_interval=60)
        t1 = asyncio.create_task(c.publish("a", b"q1", qos=1))
        p1 = await conn.expect(codec.PUBLISH)
        t2 = asyncio.create_task(c.publish("b", b"q2", qos=2))
        p2 = await conn.expect(codec.PUBLISH)
        await conn.send_packet(codec.Ack(codec.PUBREC, p2.packet_id))
        await conn.expect(codec.PUBREL)
        conn.close()
        conn2, connect = await accept_connect(broker, codec.Connack(0, session_present=True))
        assert connect.clean_start is False
        again = await conn2.expect(codec.PUBLISH)
        assert (again.packet_id, again.dup, again.payload) == (p1.packet_id, True, b"q1")
        rel = await conn2.expect(codec.PUBREL)
        assert rel.packet_id == p2.packet_id
        await conn2.send_packet(codec.Ack(codec.PUBACK, p1.packet_id))
        await conn2.send_packet(codec.Ack(codec.PUBCOMP, p2.packet_id))
        assert await asyncio.wait_for(t1, 2) == p1.packet_id
        assert await asyncio.wait_for(t2, 2) == p2.packet_id
        await c.disconnect()


async def test_acks_leave_in_the_order_the_messages_came():
    """[MQTT-4.6.0-2/3] PUBACK/PUBREC in the order of the PUBLISHes, also when many arrive in
    one read (the client then sends their acks in one write)."""
    got = []
    async with ScriptedBroker() as broker:
        c, conn = await connected(broker, receive_maximum=32)
        c.on_message(lambda m: got.append(m.packet_id))
        burst = b"".join(codec.encode_bytes(codec.Publish("t", b"%d" % i, qos=1 + i % 2,
                                                          packet_id=100 + i))
                         for i in range(20))
        await conn.send(burst)
        acks = [await conn.read_packet(2) for _ in range(20)]
        assert [(first >> 4, pkt.packet_id) for first, _, pkt in acks] == [
            (codec.PUBACK if i % 2 == 0 else codec.PUBREC, 100 + i) for i in range(20)]
        assert got == [100 + i for i in range(20)]
        await c.disconnect()


async def test_retained_message_right_behind_the_suback_reaches_the_callback():
    got = []
    async with ScriptedBroker() as broker:
        c, conn = await connected(broker)
        task = asyncio.create_task(c.subscribe("r/#", lambda m: got.append(m.payload), qos=1))
        sub = await conn.expect(codec.SUBSCRIBE)
        sid = sub.properties.get(P.PROP_SUBSCRIPTION_IDENTIFIER)
        assert sid  # the client names its subscription, to route overlapping copies
        await conn.send(codec.encode_bytes(codec.SubAck(codec.SUBACK, sub.packet_id, [1]))
                        + codec.encode_bytes(codec.Publish(
                            "r/x", b"retained", qos=1, retain=True, packet_id=9,
                            properties={P.PROP_SUBSCRIPTION_IDENTIFIER: sid})))
        assert await asyncio.wait_for(task, 2) == 1
        assert (await conn.expect(codec.PUBACK)).packet_id == 9
        assert got == [b"retained"]
        await c.disconnect()


@pytest.mark.parametrize("rc", [0x95, 0x99, 0x9A, 0x9B])
async def test_a_refusal_retrying_cannot_fix_stops_reconnecting(rc):
    """Issue 8 item 11: packet too large, payload format, retain or QoS not supported (our
    CONNECT or its Will asks what the server refuses, and would ask again): no more attempts,
    a Disconnected naming the code, and publish raises at once."""
    rec = Recorder()
    async with ScriptedBroker() as broker:
        c, conn = await connected(broker, rec, reconnect_config=FAST)
        conn.close()
        await rec.wait(Reconnecting, 1)
        await accept_connect(broker, codec.Connack(rc))
        gone = await rec.wait(Disconnected, 2)
        assert gone.reason_code == rc, gone
        assert gone.by_server
        assert isinstance(gone.error, ConnectRefused)
        await asyncio.sleep(0.3)  # well past the next backoff delay
        assert len(rec.of(Reconnecting)) == 1, rec.events
        with pytest.raises(ConnectRefused):
            await asyncio.wait_for(c.publish("t", b"x", 1), 1)
        await c.disconnect()
