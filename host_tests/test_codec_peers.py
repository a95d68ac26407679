"""Independent cross-checks of the codec against other people's MQTT 5 code.

(a) paho-mqtt 2.x: what its client REALLY sends over a loopback socket -- CONNECT with every
    CONNECT property it supports, a Will with properties, user name and password; PUBLISH
    QoS 0/1/2 with properties; SUBSCRIBE with options; UNSUBSCRIBE; DISCONNECT with a reason
    -- decoded with our decoder, field by field. The tiny broker answering it encodes every
    reply (CONNACK with properties, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, and
    PUBLISHes to paho) with OUR encoder, and paho's callbacks show it accepted and read them:
    that cross-checks the encoder too.
(b) a real Mosquitto (fixture ``mosquitto``): our encoded CONNECT/SUBSCRIBE/PUBLISH over a
    raw socket, no client logic; we decode its CONNACK (with its properties), SUBACK, the
    PUBLISH delivered back, PUBACK, the QoS 2 exchange and PINGRESP.
(c) the ``mqtt5`` PyPI package (a Rust sans-IO codec) as a second, independent codec on
    generated packets, both directions.
"""

import socket
import threading
import time

import pytest
from codec_strategies import packets
from hypothesis import given, settings

from mqtt_v5 import _server_codec as codec
from mqtt_v5 import properties as P
from mqtt_v5._server_codec import Ack, Connack, Publish, SubAck, Subscribe, Unsubscribe

HOST = "127.0.0.1"
WAIT_S = 10


def recv_packet(sock, reader, timeout=WAIT_S):
    """The next whole packet from ``sock`` (framed by our PacketReader), with its raw bytes:
    (packet, raw). None when the peer closed the connection."""
    deadline = time.monotonic() + timeout
    while True:
        first = reader.next()
        if first >= 0:
            raw = bytes(reader.buf[reader.body_start - _hdr_len(reader):reader.body_end])
            r = reader.reader.reset(reader.buf, reader.body_start, reader.body_end)
            return codec.decode_body(first, r), raw
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no packet within {timeout} s")
        sock.settimeout(left)
        view = reader.free()
        n = sock.recv_into(view, len(view))
        if n == 0:
            return None, b""
        reader.wrote(n)


def _hdr_len(reader):
    return 1 + P.vbi_size(reader.body_end - reader.body_start)


# ====================================================================== (a) paho-mqtt ==

class FakeBroker:
    """One connection on 127.0.0.1:<free port>, answered minimally with OUR encoder.
    Records (packet, raw bytes) of everything the client sent."""

    CONNACK_PROPS = {  # noqa: RUF012 (read only)
        P.PROP_RECEIVE_MAXIMUM: 10,
        P.PROP_TOPIC_ALIAS_MAXIMUM: 5,
        P.PROP_SERVER_KEEP_ALIVE: 40,
        P.PROP_MAXIMUM_PACKET_SIZE: 65536,
        P.PROP_RETAIN_AVAILABLE: 1,
        P.PROP_REASON_STRING: "welcome",
        P.PROP_USER_PROPERTY: [("server", "fake"), ("server", "again")],
        P.PROP_RESPONSE_INFORMATION: "resp/",
    }
    TO_CLIENT = (
        Publish("a/1", b"\x00qos1", 1, False, False, 501, {
            P.PROP_PAYLOAD_FORMAT_INDICATOR: 0,
            P.PROP_MESSAGE_EXPIRY_INTERVAL: 99,
            P.PROP_CONTENT_TYPE: "application/octet-stream",
            P.PROP_RESPONSE_TOPIC: "reply/here",
            P.PROP_CORRELATION_DATA: b"\xca\xfe",
            P.PROP_USER_PROPERTY: [("k", "v1"), ("k", "v2")],
            P.PROP_SUBSCRIPTION_IDENTIFIER: [7],
        }),
        Publish("b/x/y", "qos2 \u00e9".encode(), 2, True, False, 502,
                {P.PROP_PAYLOAD_FORMAT_INDICATOR: 1, P.PROP_SUBSCRIPTION_IDENTIFIER: [7, 8]}),
        Publish("a/0", b"qos0", 0),
    )

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.bind((HOST, 0))
        self.lsock.listen(1)
        self.port = self.lsock.getsockname()[1]
        self.got = []
        self.error = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _send(self, sock, pkt):
        sock.sendall(codec.encode_bytes(pkt))

    def _run(self):
        try:
            self.lsock.settimeout(WAIT_S)
            sock, _ = self.lsock.accept()
            with sock:
                self._serve(sock)
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            self.lsock.close()
            self.done.set()

    def _serve(self, sock):
        rd = codec.PacketReader(1 << 16)
        while True:
            pkt, raw = recv_packet(sock, rd)
            if pkt is None:
                return
            self.got.append((pkt, raw))
            t = pkt.type
            if t == codec.CONNECT:
                props = dict(self.CONNACK_PROPS)
                if P.PROP_AUTHENTICATION_METHOD in pkt.properties:
                    props[P.PROP_AUTHENTICATION_METHOD] = pkt.properties[
                        P.PROP_AUTHENTICATION_METHOD]
                self._send(sock, Connack(0, False, props))
            elif t == codec.PUBLISH and pkt.qos == 1:
                self._send(sock, Ack(codec.PUBACK, pkt.packet_id, 0x10,
                                     {P.PROP_REASON_STRING: "nobody listens"}))
            elif t == codec.PUBLISH and pkt.qos == 2:
                self._send(sock, Ack(codec.PUBREC, pkt.packet_id))
            elif t == codec.PUBREL:
                self._send(sock, Ack(codec.PUBCOMP, pkt.packet_id))
            elif t == codec.PUBREC:  # paho received our QoS 2 PUBLISH
                self._send(sock, Ack(codec.PUBREL, pkt.packet_id))
            elif t == codec.SUBSCRIBE:
                granted = [opts & 3 for _, opts in pkt.subscriptions]
                self._send(sock, SubAck(codec.SUBACK, pkt.packet_id, granted,
                                        {P.PROP_USER_PROPERTY: [("sub", "ok")]}))
                for p in self.TO_CLIENT:
                    self._send(sock, p)
            elif t == codec.UNSUBSCRIBE:
                self._send(sock, SubAck(codec.UNSUBACK, pkt.packet_id,
                                        [0x00] + [0x11] * (len(pkt.filters) - 1),
                                        {P.PROP_REASON_STRING: "bye filters"}))
            elif t == codec.PINGREQ:
                sock.sendall(codec.PINGRESP_BYTES)
            elif t == codec.DISCONNECT:
                return

    def of_type(self, t):
        return [p for p, _ in self.got if p.type == t]


@pytest.fixture
def paho():
    paho_mqtt = pytest.importorskip("paho.mqtt")
    if not paho_mqtt.__version__.startswith("2."):
        pytest.skip(f"needs paho-mqtt 2.x, found {paho_mqtt.__version__}")
    import paho.mqtt.client as mqtt

    return mqtt


def test_paho_client_conversation(paho):
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode
    from paho.mqtt.subscribeoptions import SubscribeOptions

    broker = FakeBroker()
    events = {name: threading.Event() for name in ("connect", "subscribe", "unsubscribe")}
    seen = {"messages": [], "published": {}}

    def on_connect(client, userdata, flags, reason_code, properties):
        seen["connack"] = (flags.session_present, reason_code.value, properties)
        events["connect"].set()

    def on_publish(client, userdata, mid, reason_code, properties):
        seen["published"][mid] = (reason_code.value, properties)

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        seen["suback"] = ([rc.value for rc in reason_codes], properties)
        events["subscribe"].set()

    def on_unsubscribe(client, userdata, mid, reason_codes, properties):
        seen["unsuback"] = ([rc.value for rc in reason_codes], properties)
        events["unsubscribe"].set()

    def on_message(client, userdata, msg):
        seen["messages"].append(msg)

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="paho-peer",
                         protocol=paho.MQTTv5)
    client.on_connect = on_connect
    client.on_publish = on_publish
    client.on_subscribe = on_subscribe
    client.on_unsubscribe = on_unsubscribe
    client.on_message = on_message

    will_props = Properties(PacketTypes.WILLMESSAGE)
    will_props.WillDelayInterval = 15
    will_props.PayloadFormatIndicator = 1
    will_props.MessageExpiryInterval = 3600
    will_props.ContentType = "text/plain"
    will_props.ResponseTopic = "will/response"
    will_props.CorrelationData = b"\x01\x02\x03"
    will_props.UserProperty = ("will", "yes")
    client.will_set("will/topic", b"gone", qos=1, retain=True, properties=will_props)
    client.username_pw_set("user", "s\u00e9cret")

    cprops = Properties(PacketTypes.CONNECT)
    cprops.SessionExpiryInterval = 120
    cprops.ReceiveMaximum = 20
    cprops.MaximumPacketSize = 100000
    cprops.TopicAliasMaximum = 8
    cprops.RequestResponseInformation = 1
    cprops.RequestProblemInformation = 0
    cprops.UserProperty = [("a", "1"), ("a", "2")]
    cprops.AuthenticationMethod = "PLAIN-ish"
    cprops.AuthenticationData = b"\x00token"

    client.connect(HOST, broker.port, keepalive=45, clean_start=True, properties=cprops)
    client.loop_start()
    try:
        assert events["connect"].wait(WAIT_S), broker.error
        pprops = Properties(PacketTypes.PUBLISH)
        pprops.PayloadFormatIndicator = 1
        pprops.MessageExpiryInterval = 30
        pprops.ContentType = "application/json"
        pprops.ResponseTopic = "resp/1"
        pprops.CorrelationData = b"corr"
        pprops.UserProperty = [("u", "1")]
        pprops.TopicAlias = 3
        infos = [client.publish("t/q0", b"zero", qos=0, properties=pprops),
                 client.publish("t/q1", b"one", qos=1, retain=True, properties=pprops),
                 client.publish("t/q2", "tw\u00f6".encode(), qos=2)]
        for info in infos:
            info.wait_for_publish(WAIT_S)
            assert info.is_published()

        sprops = Properties(PacketTypes.SUBSCRIBE)
        sprops.SubscriptionIdentifier = 7
        sprops.UserProperty = ("s", "p")
        client.subscribe([
            ("a/+", SubscribeOptions(qos=2, noLocal=True, retainAsPublished=True,
                                     retainHandling=2)),
            ("b/#", SubscribeOptions(qos=1, retainHandling=1)),
            ("$share/grp/c", SubscribeOptions(qos=0)),
        ], properties=sprops)
        assert events["subscribe"].wait(WAIT_S), broker.error
        deadline = time.monotonic() + WAIT_S
        while len(seen["messages"]) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)

        uprops = Properties(PacketTypes.UNSUBSCRIBE)
        uprops.UserProperty = ("un", "sub")
        client.unsubscribe(["a/+", "b/#"], properties=uprops)
        assert events["unsubscribe"].wait(WAIT_S), broker.error

        dprops = Properties(PacketTypes.DISCONNECT)
        dprops.SessionExpiryInterval = 0
        dprops.ReasonString = "done for today"
        client.disconnect(ReasonCode(PacketTypes.DISCONNECT, "Disconnect with will message"),
                          dprops)
        assert broker.done.wait(WAIT_S)
    finally:
        client.loop_stop()
    assert broker.error is None, broker.error

    # ---- what paho sent, decoded by us ----
    (connect,) = broker.of_type(codec.CONNECT)
    assert connect.client_id == "paho-peer"
    assert connect.clean_start is True
    assert connect.keep_alive == 45
    assert connect.username == "user"
    assert connect.password == "s\u00e9cret".encode()
    assert connect.properties == {
        P.PROP_SESSION_EXPIRY_INTERVAL: 120,
        P.PROP_RECEIVE_MAXIMUM: 20,
        P.PROP_MAXIMUM_PACKET_SIZE: 100000,
        P.PROP_TOPIC_ALIAS_MAXIMUM: 8,
        P.PROP_REQUEST_RESPONSE_INFORMATION: 1,
        P.PROP_REQUEST_PROBLEM_INFORMATION: 0,
        P.PROP_USER_PROPERTY: [("a", "1"), ("a", "2")],
        P.PROP_AUTHENTICATION_METHOD: "PLAIN-ish",
        P.PROP_AUTHENTICATION_DATA: b"\x00token",
    }
    will = connect.will
    assert (will.topic, will.payload, will.qos, will.retain) == ("will/topic", b"gone", 1, True)
    assert will.properties == {
        P.PROP_WILL_DELAY_INTERVAL: 15,
        P.PROP_PAYLOAD_FORMAT_INDICATOR: 1,
        P.PROP_MESSAGE_EXPIRY_INTERVAL: 3600,
        P.PROP_CONTENT_TYPE: "text/plain",
        P.PROP_RESPONSE_TOPIC: "will/response",
        P.PROP_CORRELATION_DATA: b"\x01\x02\x03",
        P.PROP_USER_PROPERTY: [("will", "yes")],
    }

    pubs = broker.of_type(codec.PUBLISH)
    assert [(p.topic, p.payload, p.qos, p.retain, p.dup) for p in pubs] == [
        ("t/q0", b"zero", 0, False, False), ("t/q1", b"one", 1, True, False),
        ("t/q2", "tw\u00f6".encode(), 2, False, False)]
    assert pubs[0].packet_id == 0
    assert pubs[1].packet_id
    assert pubs[2].packet_id
    want_pprops = {
        P.PROP_PAYLOAD_FORMAT_INDICATOR: 1, P.PROP_MESSAGE_EXPIRY_INTERVAL: 30,
        P.PROP_CONTENT_TYPE: "application/json", P.PROP_RESPONSE_TOPIC: "resp/1",
        P.PROP_CORRELATION_DATA: b"corr", P.PROP_USER_PROPERTY: [("u", "1")],
        P.PROP_TOPIC_ALIAS: 3,
    }
    assert pubs[0].properties == want_pprops
    assert pubs[1].properties == want_pprops
    assert pubs[2].properties == {}
    (pubrel,) = [p for p in broker.of_type(codec.PUBREL) if p.packet_id == pubs[2].packet_id]
    assert pubrel.reason_code == 0

    (sub,) = broker.of_type(codec.SUBSCRIBE)
    assert sub.subscriptions == [("a/+", codec.sub_options(2, True, True, 2)),
                                 ("b/#", codec.sub_options(1, False, False, 1)),
                                 ("$share/grp/c", 0)]
    assert sub.properties == {P.PROP_SUBSCRIPTION_IDENTIFIER: [7],
                              P.PROP_USER_PROPERTY: [("s", "p")]}
    (unsub,) = broker.of_type(codec.UNSUBSCRIBE)
    assert unsub.filters == ["a/+", "b/#"]
    assert unsub.properties == {P.PROP_USER_PROPERTY: [("un", "sub")]}

    # paho acknowledged the PUBLISHes we encoded: PUBACK for QoS 1, PUBREC + PUBCOMP for 2
    (puback,) = broker.of_type(codec.PUBACK)
    assert (puback.packet_id, puback.reason_code) == (501, 0)
    assert [p.packet_id for p in broker.of_type(codec.PUBREC)] == [502]
    assert [p.packet_id for p in broker.of_type(codec.PUBCOMP)] == [502]

    (disc,) = broker.of_type(codec.DISCONNECT)
    assert disc.reason_code == 0x04
    assert disc.properties == {P.PROP_SESSION_EXPIRY_INTERVAL: 0,
                               P.PROP_REASON_STRING: "done for today"}
    _, raw = next(x for x in broker.got if x[0].type == codec.DISCONNECT)
    assert raw[:3] == b"\xe0\x18\x04"  # Remaining Length 24, reason code 0x04

    # ---- what paho read from our encoder ----
    session_present, rc, cprops_back = seen["connack"]
    assert (session_present, rc) == (False, 0)
    assert cprops_back.ReceiveMaximum == 10
    assert cprops_back.TopicAliasMaximum == 5
    assert cprops_back.ServerKeepAlive == 40
    assert cprops_back.MaximumPacketSize == 65536
    assert cprops_back.RetainAvailable == 1
    assert cprops_back.ReasonString == "welcome"
    assert cprops_back.UserProperty == [("server", "fake"), ("server", "again")]
    assert cprops_back.ResponseInformation == "resp/"
    assert cprops_back.AuthenticationMethod == "PLAIN-ish"
    assert client._keepalive == 40  # paho applied our Server Keep Alive

    mids = sorted(seen["published"])
    assert len(mids) == 3
    qos1_rc, qos1_props = seen["published"][infos[1].mid]
    assert qos1_rc == 0x10  # our PUBACK's "No matching subscribers"
    assert qos1_props.ReasonString == "nobody listens"
    assert seen["published"][infos[2].mid][0] == 0

    granted, sprops_back = seen["suback"]
    assert granted == [2, 1, 0]
    assert sprops_back.UserProperty == [("sub", "ok")]
    codes, uprops_back = seen["unsuback"]
    assert codes == [0x00, 0x11]
    assert uprops_back.ReasonString == "bye filters"

    msgs = {m.topic: m for m in seen["messages"]}
    assert sorted(msgs) == ["a/0", "a/1", "b/x/y"]
    m = msgs["a/1"]
    assert (m.payload, m.qos, m.retain) == (b"\x00qos1", 1, False)
    assert m.properties.MessageExpiryInterval == 99
    assert m.properties.ContentType == "application/octet-stream"
    assert m.properties.ResponseTopic == "reply/here"
    assert m.properties.CorrelationData == b"\xca\xfe"
    assert m.properties.UserProperty == [("k", "v1"), ("k", "v2")]
    assert m.properties.SubscriptionIdentifier == [7]
    m = msgs["b/x/y"]
    assert (m.payload, m.qos, m.retain) == ("qos2 \u00e9".encode(), 2, True)
    assert m.properties.PayloadFormatIndicator == 1
    assert m.properties.SubscriptionIdentifier == [7, 8]
    assert (msgs["a/0"].payload, msgs["a/0"].qos) == (b"qos0", 0)


# ====================================================================== (b) Mosquitto ==

class Wire:
    """A raw TCP connection speaking bytes encoded and decoded by our codec only."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=WAIT_S)
        self.reader = codec.PacketReader(1 << 16)
        self.buf = bytearray(1 << 16)

    def send(self, pkt):
        n = codec.encode(pkt, self.buf)
        self.sock.sendall(self.buf[:n])

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv(self):
        pkt, _ = recv_packet(self.sock, self.reader)
        assert pkt is not None, "broker closed the connection"
        return pkt

    def recv_all(self, n):
        return [self.recv() for _ in range(n)]

    def close(self):
        self.sock.close()


def by_type(pkts):
    out = {}
    for p in pkts:
        out.setdefault(p.type, []).append(p)
    return out


@pytest.mark.broker
def test_mosquitto_accepts_our_packets_and_we_decode_its_replies(mosquitto):
    w = Wire(mosquitto.host, mosquitto.plain_port)
    try:
        w.send(codec.Connect("", True, 30, None, None, None, {
            P.PROP_SESSION_EXPIRY_INTERVAL: 0,
            P.PROP_RECEIVE_MAXIMUM: 50,
            P.PROP_MAXIMUM_PACKET_SIZE: 1 << 16,
            P.PROP_TOPIC_ALIAS_MAXIMUM: 0,
            P.PROP_REQUEST_PROBLEM_INFORMATION: 1,
            P.PROP_USER_PROPERTY: [("from", "mqtt_v5 codec")],
        }))
        connack = w.recv()
        assert connack.type == codec.CONNACK
        assert connack.reason_code == 0
        assert connack.session_present is False
        # an empty client id gets one assigned [MQTT-3.2.2-16]; the listener's alias limit
        assigned = connack.properties[P.PROP_ASSIGNED_CLIENT_IDENTIFIER]
        assert assigned
        assert connack.properties[P.PROP_TOPIC_ALIAS_MAXIMUM] == 10

        topic = "codec/peer/" + assigned
        w.send(Subscribe(1, [(topic + "/#", codec.sub_options(2, False, True, 0))],
                         {P.PROP_SUBSCRIPTION_IDENTIFIER: 77}))
        suback = w.recv()
        assert (suback.type, suback.packet_id, suback.reason_codes) == (codec.SUBACK, 1, [2])

        props = {
            P.PROP_PAYLOAD_FORMAT_INDICATOR: 1,
            P.PROP_MESSAGE_EXPIRY_INTERVAL: 300,
            P.PROP_CONTENT_TYPE: "text/plain",
            P.PROP_RESPONSE_TOPIC: topic + "/reply",
            P.PROP_CORRELATION_DATA: b"\x00\x01",
            P.PROP_USER_PROPERTY: [("k", "v"), ("k", "w")],
        }
        # QoS 1 with a topic alias, then the same alias with an empty topic
        w.send(Publish(topic + "/q1", "h\u00e9llo".encode(), 1, False, False, 10,
                       {**props, P.PROP_TOPIC_ALIAS: 1}))
        w.send(Publish("", b"by alias", 1, False, False, 11, {P.PROP_TOPIC_ALIAS: 1}))
        got = by_type(w.recv_all(4))  # two PUBACKs, two PUBLISHes delivered back
        assert sorted((a.packet_id, a.reason_code) for a in got[codec.PUBACK]) == [(10, 0),
                                                                                   (11, 0)]
        d1, d2 = got[codec.PUBLISH]
        assert (d1.topic, d1.payload, d1.qos) == (topic + "/q1", "h\u00e9llo".encode(), 1)
        assert d1.properties[P.PROP_SUBSCRIPTION_IDENTIFIER] == [77]
        assert d1.properties[P.PROP_USER_PROPERTY] == [("k", "v"), ("k", "w")]
        assert d1.properties[P.PROP_CONTENT_TYPE] == "text/plain"
        assert d1.properties[P.PROP_CORRELATION_DATA] == b"\x00\x01"
        assert d1.properties[P.PROP_RESPONSE_TOPIC] == topic + "/reply"
        assert d1.properties[P.PROP_PAYLOAD_FORMAT_INDICATOR] == 1
        assert 0 < d1.properties[P.PROP_MESSAGE_EXPIRY_INTERVAL] <= 300
        assert (d2.topic, d2.payload) == (topic + "/q1", b"by alias")
        for d in (d1, d2):
            w.send(Ack(codec.PUBACK, d.packet_id))

        # QoS 2 both ways: PUBLISH -> PUBREC -> PUBREL -> PUBCOMP, and the delivery
        w.send(Publish(topic + "/q2", b"exactly once", 2, True, False, 12))
        pubrec = w.recv()
        assert (pubrec.type, pubrec.packet_id, pubrec.reason_code) == (codec.PUBREC, 12, 0)
        w.send(Ack(codec.PUBREL, 12))  # Mosquitto delivers once the PUBREL is in
        got = by_type(w.recv_all(2))
        assert [p.packet_id for p in got[codec.PUBCOMP]] == [12]
        (d3,) = got[codec.PUBLISH]
        assert (d3.topic, d3.payload, d3.qos) == (topic + "/q2", b"exactly once", 2)
        # retain-as-published was requested: the RETAIN flag comes back set
        assert d3.retain is True
        w.send(Ack(codec.PUBREC, d3.packet_id))
        pubrel = w.recv()
        assert (pubrel.type, pubrel.packet_id) == (codec.PUBREL, d3.packet_id)
        w.send(Ack(codec.PUBCOMP, d3.packet_id))

        w.send_raw(codec.PINGREQ_BYTES)
        assert w.recv().type == codec.PINGRESP

        w.send(Unsubscribe(2, [topic + "/#", "never/subscribed"]))
        unsuback = w.recv()
        assert (unsuback.type, unsuback.packet_id, unsuback.reason_codes) == (
            codec.UNSUBACK, 2, [0x00, 0x11])

        # clear the retained message, then leave with a reason
        w.send(Publish(topic + "/q2", b"", 0, True))
        w.send(codec.Disconnect(0, {P.PROP_REASON_STRING: "bye"}))
        w.sock.settimeout(WAIT_S)
        assert w.sock.recv(1) == b""  # the broker closed, nothing after
    finally:
        w.close()


@pytest.mark.broker
def test_mosquitto_refuses_what_we_refuse_to_send(mosquitto):
    # The other side of strictness: a packet our decoder calls malformed (reserved flag
    # bits on SUBSCRIBE) makes Mosquitto drop the connection too.
    w = Wire(mosquitto.host, mosquitto.plain_port)
    try:
        w.send(codec.Connect("codec-strict", True, 30))
        assert w.recv().reason_code == 0
        bad = b"\x80\x07\x00\x01\x00\x00\x01a\x00"  # SUBSCRIBE with flags 0000
        with pytest.raises(codec.ProtocolError):
            codec.decode(bad)
        w.send_raw(bad)
        w.sock.settimeout(WAIT_S)
        try:
            rest = w.sock.recv(64)
        except ConnectionResetError:
            rest = b""
        # Mosquitto closes (possibly after a DISCONNECT 0x81 that we decode)
        if rest:
            assert codec.decode(rest).reason_code in (0x81, 0x82)
    finally:
        w.close()


# ====================================================================== (c) mqtt5 ======

try:
    import mqtt5 as _m5
except ImportError:  # pragma: no cover - reported as a skip below
    _m5 = None

needs_mqtt5 = pytest.mark.skipif(_m5 is None, reason="the mqtt5 package is not installed")

# our property id -> (mqtt5 attribute, the value mqtt5 reports when the property is absent)
_M5_PROPS = {
    "publish": {0x01: ("payload_format_indicator", 0), 0x02: ("message_expiry_interval", None),
                0x03: ("content_type", None), 0x08: ("response_topic", None),
                0x09: ("correlation_data", None), 0x0B: ("subscription_ids", []),
                0x23: ("topic_alias", None), 0x26: ("user_properties", [])},
    "will": {0x01: ("payload_format_indicator", 0), 0x02: ("message_expiry_interval", None),
             0x03: ("content_type", None), 0x08: ("response_topic", None),
             0x09: ("correlation_data", None), 0x18: ("will_delay_interval", 0),
             0x26: ("user_properties", [])},
    "connect": {0x11: ("session_expiry_interval", 0), 0x15: ("authentication_method", None),
                0x16: ("authentication_data", None), 0x17: ("request_problem_info", True),
                0x19: ("request_response_info", False), 0x21: ("receive_max", 65535),
                0x22: ("topic_alias_max", 0), 0x27: ("max_packet_size", None),
                0x26: ("user_properties", [])},
    "connack": {0x11: ("session_expiry_interval", None), 0x12: ("assigned_client_id", None),
                0x13: ("server_keep_alive", None), 0x15: ("authentication_method", None),
                0x16: ("authentication_data", None), 0x1A: ("response_info", None),
                0x1C: ("server_reference", None), 0x1F: ("reason_str", None),
                0x21: ("receive_max", 65535), 0x22: ("topic_alias_max", 0),
                0x24: ("max_qos", 2), 0x25: ("retain_available", True),
                0x27: ("max_packet_size", None), 0x28: ("wildcard_subscription_available", True),
                0x29: ("subscription_id_available", True),
                0x2A: ("shared_subscription_available", True), 0x26: ("user_properties", [])},
    "ack": {0x1F: ("reason_str", None), 0x26: ("user_properties", [])},
    "subscribe": {0x0B: ("subscription_id", None), 0x26: ("user_properties", [])},
    "unsubscribe": {0x26: ("user_properties", [])},
    "disconnect": {0x11: ("session_expiry_interval", None), 0x1C: ("server_reference", None),
                   0x1F: ("reason_str", None), 0x26: ("user_properties", [])},
    "auth": {0x15: ("authentication_method", None), 0x16: ("authentication_data", None),
             0x1F: ("reason_str", None), 0x26: ("user_properties", [])},
}
_KIND = {codec.CONNECT: "connect", codec.CONNACK: "connack", codec.PUBLISH: "publish",
         codec.PUBACK: "ack", codec.PUBREC: "ack", codec.PUBREL: "ack", codec.PUBCOMP: "ack",
         codec.SUBSCRIBE: "subscribe", codec.SUBACK: "ack", codec.UNSUBSCRIBE: "unsubscribe",
         codec.UNSUBACK: "ack", codec.DISCONNECT: "disconnect", codec.AUTH: "auth"}


def _plain(v):
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return int(v)  # IntEnum -> int
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, tuple):
        return tuple(_plain(x) for x in v)
    return v


def _props_view(kind, props):
    """Our property dict as the mqtt5 attribute dict it corresponds to."""
    out = {}
    for pid, (attr, default) in _M5_PROPS[kind].items():
        v = props.get(pid, default)
        if pid == 0x0B and kind == "subscribe" and v is not None:
            (v,) = v
        if pid == 0x26:
            v = [tuple(x) for x in v]
        out[attr] = _plain(v)
    return out


def ours_view(p):
    """Everything mqtt5 can represent of our packet ``p``, as plain values."""
    t = p.type
    out = {"type": t}
    if t in _KIND:
        out.update(_props_view(_KIND[t], p.properties))
    if t == codec.CONNECT:
        out.update(client_id=p.client_id, username=p.username, password=p.password,
                   clean_start=int(p.clean_start), keep_alive=p.keep_alive)
        w = p.will
        out["will"] = None if w is None else dict(
            _props_view("will", w.properties), topic=w.topic, payload=w.payload, qos=w.qos,
            retain=int(w.retain))
    elif t == codec.CONNACK:
        out.update(session_present=int(p.session_present), reason_code=p.reason_code)
    elif t == codec.PUBLISH:
        out.update(topic=p.topic, payload=p.payload, qos=p.qos, retain=int(p.retain),
                   duplicate=int(p.dup), packet_id=p.packet_id or None)
    elif t in (codec.PUBACK, codec.PUBREC, codec.PUBREL, codec.PUBCOMP):
        out.update(packet_id=p.packet_id, reason_code=p.reason_code)
    elif t == codec.SUBSCRIBE:
        out.update(packet_id=p.packet_id, topic_filters=[tuple(s) for s in p.subscriptions])
    elif t in (codec.SUBACK, codec.UNSUBACK):
        out.update(packet_id=p.packet_id, reason_codes=list(p.reason_codes))
    elif t == codec.UNSUBSCRIBE:
        out.update(packet_id=p.packet_id, patterns=list(p.filters))
    elif t in (codec.DISCONNECT, codec.AUTH):
        out.update(reason_code=p.reason_code)
    return out


_M5_TYPES = {}


def _m5_type(x):
    if not _M5_TYPES:
        _M5_TYPES.update({
            _m5.ConnectPacket: codec.CONNECT, _m5.ConnAckPacket: codec.CONNACK,
            _m5.PublishPacket: codec.PUBLISH, _m5.PubAckPacket: codec.PUBACK,
            _m5.PubRecPacket: codec.PUBREC, _m5.PubRelPacket: codec.PUBREL,
            _m5.PubCompPacket: codec.PUBCOMP, _m5.SubscribePacket: codec.SUBSCRIBE,
            _m5.SubAckPacket: codec.SUBACK, _m5.UnsubscribePacket: codec.UNSUBSCRIBE,
            _m5.UnsubAckPacket: codec.UNSUBACK, _m5.PingReqPacket: codec.PINGREQ,
            _m5.PingRespPacket: codec.PINGRESP, _m5.DisconnectPacket: codec.DISCONNECT,
            _m5.AuthPacket: codec.AUTH})
    return _M5_TYPES[type(x)]


def m5_view(x):
    """The same view of an mqtt5 packet object."""
    t = _m5_type(x)
    out = {"type": t}
    if t in _KIND:
        for attr, _ in _M5_PROPS[_KIND[t]].values():
            out[attr] = _plain(getattr(x, attr))
    if t == codec.CONNECT:
        out.update(client_id=x.client_id, username=x.username, password=x.password,
                   clean_start=int(x.clean_start), keep_alive=x.keep_alive)
        w = x.will
        if w is None:
            out["will"] = None
        else:
            out["will"] = {attr: _plain(getattr(w, attr))
                           for attr, _ in _M5_PROPS["will"].values()}
            out["will"].update(topic=w.topic, payload=w.payload or b"", qos=int(w.qos),
                               retain=int(w.retain))
    elif t == codec.CONNACK:
        out.update(session_present=int(x.session_present), reason_code=int(x.reason_code))
    elif t == codec.PUBLISH:
        out.update(topic=x.topic, payload=x.payload, qos=int(x.qos), retain=int(x.retain),
                   duplicate=int(x.duplicate), packet_id=x.packet_id)
    elif t in (codec.PUBACK, codec.PUBREC, codec.PUBREL, codec.PUBCOMP):
        out.update(packet_id=x.packet_id, reason_code=int(x.reason_code))
    elif t == codec.SUBSCRIBE:
        out.update(packet_id=x.packet_id, topic_filters=[
            (f.pattern, int(f.max_qos) | int(f.no_local) << 2 | int(f.retain_as_published) << 3
             | int(f.retain_handling) << 4) for f in x.topic_filters])
    elif t in (codec.SUBACK, codec.UNSUBACK):
        out.update(packet_id=x.packet_id, reason_codes=[int(c) for c in x.reason_codes])
    elif t == codec.UNSUBSCRIBE:
        out.update(packet_id=x.packet_id, patterns=list(x.patterns))
    elif t in (codec.DISCONNECT, codec.AUTH):
        out.update(reason_code=int(x.reason_code))
    return out


def to_m5(p):
    """Build the mqtt5 packet object for our packet ``p``."""
    v = ours_view(p)
    t = v.pop("type")
    kind = _KIND.get(t)
    props = {a: v.pop(a) for a, _ in _M5_PROPS[kind].values()} if kind else {}
    if t == codec.CONNECT:
        w = v.pop("will")
        will = None
        if w is not None:
            will = _m5.Will(w.pop("topic"), payload=w.pop("payload"), qos=_m5.QoS(w.pop("qos")),
                            retain=bool(w.pop("retain")), **w)
        props["request_problem_info"] = bool(props["request_problem_info"])
        props["request_response_info"] = bool(props["request_response_info"])
        return _m5.ConnectPacket(v["client_id"], username=v["username"],
                                 password=v["password"], clean_start=bool(v["clean_start"]),
                                 keep_alive=v["keep_alive"], will=will, **props)
    if t == codec.CONNACK:
        for a in ("retain_available", "wildcard_subscription_available",
                  "subscription_id_available", "shared_subscription_available"):
            props[a] = bool(props[a])
        props["max_qos"] = _m5.QoS(props["max_qos"])
        return _m5.ConnAckPacket(session_present=bool(v["session_present"]),
                                 reason_code=_m5.ConnAckReasonCode(v["reason_code"]), **props)
    if t == codec.PUBLISH:
        return _m5.PublishPacket(v["topic"], v["payload"], qos=_m5.QoS(v["qos"]),
                                 retain=bool(v["retain"]), packet_id=v["packet_id"],
                                 duplicate=bool(v["duplicate"]), **props)
    acks = {codec.PUBACK: (_m5.PubAckPacket, _m5.PubAckReasonCode),
            codec.PUBREC: (_m5.PubRecPacket, _m5.PubRecReasonCode),
            codec.PUBREL: (_m5.PubRelPacket, _m5.PubRelReasonCode),
            codec.PUBCOMP: (_m5.PubCompPacket, _m5.PubCompReasonCode)}
    if t in acks:
        cls, rcs = acks[t]
        return cls(v["packet_id"], reason_code=rcs(v["reason_code"]), **props)
    if t == codec.SUBSCRIBE:
        filters = [_m5.TopicFilter(f, max_qos=_m5.QoS(o & 3), no_local=bool(o & 4),
                                   retain_as_published=bool(o & 8),
                                   retain_handling=_m5.RetainHandling(o >> 4 & 3))
                   for f, o in v["topic_filters"]]
        return _m5.SubscribePacket(v["packet_id"], filters, **props)
    if t == codec.SUBACK:
        return _m5.SubAckPacket(v["packet_id"],
                                [_m5.SubAckReasonCode(c) for c in v["reason_codes"]], **props)
    if t == codec.UNSUBACK:
        return _m5.UnsubAckPacket(v["packet_id"],
                                  [_m5.UnsubAckReasonCode(c) for c in v["reason_codes"]],
                                  **props)
    if t == codec.UNSUBSCRIBE:
        return _m5.UnsubscribePacket(v["packet_id"], v["patterns"], **props)
    if t == codec.PINGREQ:
        return _m5.PingReqPacket()
    if t == codec.PINGRESP:
        return _m5.PingRespPacket()
    if t == codec.DISCONNECT:
        return _m5.DisconnectPacket(reason_code=_m5.DisconnectReasonCode(v["reason_code"]),
                                    **props)
    return _m5.AuthPacket(reason_code=_m5.AuthReasonCode(v["reason_code"]), **props)


@needs_mqtt5
@given(packets)
@settings(max_examples=300)
def test_mqtt5_reads_what_we_encode(pkt):
    data = codec.encode_bytes(pkt)
    if data == b"\xf0\x00":
        # mqtt5 0.8.0 refuses an AUTH with Remaining Length 0 ("Missing property length"),
        # though 3.15.2.1 allows exactly that for Success without properties, and it is the
        # only form such an AUTH may take (its long form would lack the Authentication
        # Method, 3.15.2.2.2). A known limitation of the peer; nothing more to compare.
        with pytest.raises(ValueError, match="property length"):
            _m5.read(memoryview(data))
        return
    x, n = _m5.read(memoryview(data))
    assert n == len(data)
    assert m5_view(x) == ours_view(pkt)


@needs_mqtt5
@given(packets)
@settings(max_examples=300)
def test_we_read_what_mqtt5_encodes(pkt):
    data = to_m5(pkt).write()
    if data == b"\xf0\x02\x00\x00":
        # mqtt5 writes a Success AUTH without properties in the long form, with no
        # Authentication Method, which 3.15.2.2.2 makes a Protocol Error; we send (and
        # read) the Remaining Length 0 form instead.
        with pytest.raises(codec.ProtocolError):
            codec.decode(data)
        data = b"\xf0\x00"
    back = codec.decode(data)
    assert ours_view(back) == ours_view(pkt)


@needs_mqtt5
def test_mqtt5_agrees_on_the_spec_connect_example():
    # The spec's CONNECT (see test_codec_vectors) read by both codecs.
    data = (b"\x10\x37\x00\x04MQTT\x05\xce\x00\x0a\x05\x11\x00\x00\x00\x0a\x00\x08client-1"
            b"\x05\x18\x00\x00\x00\x1e\x00\x06a/will\x00\x03bye\x00\x04user\x00\x02pw")
    x, n = _m5.read(memoryview(data))
    assert n == len(data)
    assert m5_view(x) == ours_view(codec.decode(data))
