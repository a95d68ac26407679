"""The twin's WebSocket server side (websockets' sans-I/O protocol under the twin's own
asyncio streams) against an independent client: ``websockets``' synchronous client sends
MQTT in fragmented binary messages and pings, and a text message, which MQTT forbids
[MQTT-6.0.0-1]."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from mqtt_v5 import _server_codec as codec
from twin._server_util import client_context, running_twin


@pytest.fixture
def tw(tmp_path):
    with running_twin(tmp_path, listeners=("wss",)) as t:
        yield t


def _connect(tw, **kwargs):
    return connect(
        f"wss://localhost:{tw.port('wss')}/mqtt",
        ssl=client_context(tw.ca),
        subprotocols=["mqtt"],
        open_timeout=5,
        **kwargs,
    )


def test_fragmented_connect_and_ping_get_a_connack(tw):
    with _connect(tw) as ws:
        assert ws.subprotocol == "mqtt"
        ws.ping().wait(5)  # answered by the twin
        packet = codec.encode_bytes(codec.Connect("ws-1"))
        ws.send([packet[:3], packet[3:7], packet[7:]])  # one message in three frames
        reply = ws.recv(timeout=5)
        assert isinstance(reply, bytes)
        ack = codec.decode(reply)
        assert ack.type == codec.CONNACK
        assert ack.reason_code in (0x86, 0x87)  # no authorizer: refused, but framed right


def test_text_message_is_refused_with_1003(tw):
    with _connect(tw) as ws:
        ws.send("not MQTT")
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=5)
        assert e.value.rcvd is not None
        assert e.value.rcvd.code == 1003


def test_upgrade_without_the_mqtt_subprotocol_is_refused(tw):
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as e:
        connect(
            f"wss://localhost:{tw.port('wss')}/mqtt", ssl=client_context(tw.ca), open_timeout=5
        )
    assert e.value.response.status_code == 400
