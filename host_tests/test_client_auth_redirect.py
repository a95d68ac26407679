"""MqttClient: enhanced authentication (issue 8 item 6) and server redirection and CONNACK
properties (item 7), against a scripted broker (Mosquitto has no AUTH method plug-in here)
and, for where a redirection leads, the suite's Mosquitto."""

from __future__ import annotations

import asyncio

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
)
from mqtt_v5.errors import ConnectRefused, NetworkError, ProtocolError

METHOD = "X-CHALLENGE"
FAST = ReconnectConfig(initial_delay=0.05, max_delay=0.2, jitter=0)


def auth(rc, data=None, method=METHOD):
    props = {P.PROP_AUTHENTICATION_METHOD: method}
    if data is not None:
        props[P.PROP_AUTHENTICATION_DATA] = data
    return codec.Auth(rc, props)


def auth_client(**kw):
    kw.setdefault("reconnect_config", ReconnectConfig(enabled=False))
    return MqttClient(ConnectOptions(
        "authed", auth_method=METHOD, auth_data=b"hello",
        on_auth=lambda data: b"answer:" + data, connect_timeout=3, **kw))


async def test_enhanced_authentication_at_connect():
    async with ScriptedBroker() as broker:
        c = auth_client()
        task = asyncio.create_task(c.connect(broker.url))
        conn = await broker.accept()
        connect = await conn.expect(codec.CONNECT)
        assert connect.properties[P.PROP_AUTHENTICATION_METHOD] == METHOD
        assert connect.properties[P.PROP_AUTHENTICATION_DATA] == b"hello"
        for challenge in (b"one", b"two"):
            await conn.send_packet(auth(0x18, challenge))
            reply = await conn.expect(codec.AUTH)
            assert reply.reason_code == 0x18
            assert reply.properties == {P.PROP_AUTHENTICATION_METHOD: METHOD,
                                        P.PROP_AUTHENTICATION_DATA: b"answer:" + challenge}
        await conn.send_packet(codec.Connack(0, False, {P.PROP_AUTHENTICATION_METHOD: METHOD}))
        event = await asyncio.wait_for(task, 3)
        assert isinstance(event, Connected)
        assert c.is_connected
        await c.disconnect()


async def test_reauthentication():
    async with ScriptedBroker() as broker:
        c = auth_client()
        task = asyncio.create_task(c.connect(broker.url))
        conn = await broker.accept()
        await conn.expect(codec.CONNECT)
        await conn.send_packet(codec.Connack(0))
        await asyncio.wait_for(task, 3)
        again = asyncio.create_task(c.reauthenticate(b"again"))
        first = await conn.expect(codec.AUTH)
        assert first.reason_code == 0x19
        assert first.properties[P.PROP_AUTHENTICATION_DATA] == b"again"
        await conn.send_packet(auth(0x18, b"c"))
        reply = await conn.expect(codec.AUTH)
        assert reply.properties[P.PROP_AUTHENTICATION_DATA] == b"answer:c"
        assert not again.done()
        await conn.send_packet(auth(0))
        await asyncio.wait_for(again, 3)
        assert c.is_connected
        # A refusal: the server disconnects; reauthenticate raises with its code.
        again = asyncio.create_task(c.reauthenticate(b"bad"))
        await conn.expect(codec.AUTH)
        await conn.send_packet(codec.Disconnect(0x87))
        conn.close()
        with pytest.raises(NetworkError) as e:
            await asyncio.wait_for(again, 3)
        assert e.value.reason_code == 0x87
        await c.disconnect()


@pytest.mark.parametrize("method", [METHOD, "OTHER"])
async def test_auth_the_client_cannot_accept_is_a_protocol_error(method):
    """AUTH with another method than ours, or AUTH to a client that uses none."""
    async with ScriptedBroker() as broker:
        c = auth_client() if method != METHOD else MqttClient(ConnectOptions(
            "plain", connect_timeout=3, reconnect_config=ReconnectConfig(enabled=False)))
        task = asyncio.create_task(c.connect(broker.url))
        conn = await broker.accept()
        await conn.expect(codec.CONNECT)
        await conn.send_packet(auth(0x18, b"x", method=method if method != METHOD else "ANY"))
        with pytest.raises(ProtocolError):
            await asyncio.wait_for(task, 3)
        got = await conn.expect(codec.DISCONNECT)
        assert got.reason_code == 0x82


# ------------------------------------------------------------------------ item 7 --


async def test_connack_properties_are_exposed():
    props = {P.PROP_ASSIGNED_CLIENT_IDENTIFIER: "given-id",
             P.PROP_RESPONSE_INFORMATION: "resp/base",
             P.PROP_REASON_STRING: "welcome",
             P.PROP_USER_PROPERTY: [("region", "here")]}
    async with ScriptedBroker() as broker:
        c = MqttClient(ConnectOptions(connect_timeout=3,
                                      reconnect_config=ReconnectConfig(enabled=False)))
        task = asyncio.create_task(c.connect(broker.url))
        conn = await broker.accept()
        await conn.expect(codec.CONNECT)
        await conn.send_packet(codec.Connack(0, False, props))
        ev = await asyncio.wait_for(task, 3)
        assert ev.assigned_client_id == "given-id"
        assert ev.response_information == "resp/base"
        assert ev.reason_string == "welcome"
        assert ev.user_properties == [("region", "here")]
        assert ev.server_reference is None
        assert c.client_id == "given-id"
        await c.disconnect()


@pytest.mark.parametrize("follow", [True, False])
async def test_connack_redirection(mosquitto, follow):
    async with ScriptedBroker() as broker:
        c = MqttClient(ConnectOptions(connect_timeout=3, follow_redirects=follow,
                                      reconnect_config=ReconnectConfig(enabled=False)))
        task = asyncio.create_task(c.connect(broker.url))
        conn = await broker.accept()
        await conn.expect(codec.CONNECT)
        ref = f"127.0.0.1:{mosquitto.plain_port}"
        await conn.send_packet(codec.Connack(0x9D, False, {P.PROP_SERVER_REFERENCE: ref}))
        if not follow:
            with pytest.raises(ConnectRefused) as e:
                await asyncio.wait_for(task, 3)
            assert e.value.reason_code == 0x9D
            return
        await asyncio.wait_for(task, 5)
        assert c.is_connected
        assert await c.subscribe("redirect/x", qos=1) == 1  # Mosquitto answers
        await c.disconnect()


async def test_disconnect_redirection(mosquitto):
    rec = Recorder()
    async with ScriptedBroker() as broker:
        c = MqttClient(ConnectOptions(connect_timeout=3, follow_redirects=True,
                                      reconnect_config=FAST))
        c.on_connection_event(rec)
        task = asyncio.create_task(c.connect(broker.url))
        conn = await broker.accept()
        await conn.expect(codec.CONNECT)
        await conn.send_packet(codec.Connack(0))
        await asyncio.wait_for(task, 3)
        ref = f"127.0.0.1:{mosquitto.plain_port} 127.0.0.1:1"
        await conn.send_packet(codec.Disconnect(0x9C, {P.PROP_SERVER_REFERENCE: ref}))
        gone = await rec.wait(Disconnected, 1)
        assert gone.reason_code == 0x9C
        assert gone.server_reference == ref
        await rec.wait(Connected, 2)  # at Mosquitto now
        assert await c.subscribe("redirect/y", qos=1) == 1
        await c.disconnect()
