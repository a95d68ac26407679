"""SyncClient (mqtt_v5.sync_client) over a scripted blocking link, under pytest AND real
MicroPython: what a well-behaved broker never does (refusals, protocol violations,
silence). The Mosquitto tests are host_tests/test_sync_client.py."""

import time

from _check import raises

from mqtt_v5 import _server_codec as C
from mqtt_v5 import properties as P
from mqtt_v5.errors import (
    ConnectRefused,
    MqttTimeout,
    NetworkError,
    ProtocolError,
    PublishFailed,
    SubscribeFailed,
)
from mqtt_v5.sync_client import SyncClient


class Link:
    """A blocking transport whose far end answers like a broker, synchronously.
    ``puback``, ``suback``, ``connack`` set the codes; ``inject`` queues bytes for the
    client to read; ``quiet`` stops all answers."""

    def __init__(self, puback=0, suback=None, connack=0):
        self.inbox = bytearray()
        self.sent = []
        self.puback = puback
        self.suback = suback
        self.connack = connack
        self.quiet = False
        self.closed = False

    def inject(self, data):
        self.inbox += data

    def readinto(self, buf, timeout_s=None):
        if self.closed:
            return 0
        if not self.inbox:
            if timeout_s is None:
                return 0  # nothing would ever come: behave as a closed link
            time.sleep(min(timeout_s, 0.01))
            return None
        n = min(len(buf), len(self.inbox))
        buf[:n] = self.inbox[:n]
        self.inbox = self.inbox[n:]
        return n

    def write(self, buf):
        pkt = C.decode(bytes(buf))
        self.sent.append(pkt)
        t = pkt.type
        if self.quiet:
            return
        if t == C.CONNECT:
            self.inject(C.encode_bytes(C.Connack(self.connack)))
        elif t == C.SUBSCRIBE:
            self.inject(C.encode_bytes(C.SubAck(C.SUBACK, pkt.packet_id, self.suback or [0])))
        elif t == C.PUBLISH and pkt.qos == 1:
            self.inject(C.encode_bytes(C.Ack(C.PUBACK, pkt.packet_id, self.puback)))
        elif t == C.PUBLISH and pkt.qos == 2:
            self.inject(C.encode_bytes(C.Ack(C.PUBREC, pkt.packet_id)))
        elif t == C.PUBREL:
            self.inject(C.encode_bytes(C.Ack(C.PUBCOMP, pkt.packet_id)))
        elif t == C.PINGREQ:
            self.inject(C.PINGRESP_BYTES)

    def close(self):
        self.closed = True


def test_publish_qos_0_1_2_and_subscribe():
    link = Link(suback=[1])
    c = SyncClient("s")
    assert c.connect(link) is False
    assert c.subscribe("a/#", qos=1) == 1
    assert c.publish("a/0", b"x") == 0
    p1 = c.publish("a/1", "y", qos=1)
    p2 = c.publish("a/2", b"z", qos=2)  # returns after PUBCOMP
    assert 0 < p1 != p2 > 0
    assert [p.type for p in link.sent] == [C.CONNECT, C.SUBSCRIBE, C.PUBLISH, C.PUBLISH,
                                           C.PUBLISH, C.PUBREL]
    assert link.sent[3].payload == b"y"
    c.disconnect()
    assert link.sent[-1] == C.Disconnect(0) and link.closed and not c.is_connected


def test_refusals_reach_the_caller_and_leave_the_connection_up():
    link = Link(puback=0x87, suback=[0x87])
    c = SyncClient("s", timeout=2)
    c.connect(link)
    e = raises(PublishFailed, c.publish, "t", b"x", 1)
    assert e.reason_code == 0x87 and e.packet_id > 0
    e = raises(SubscribeFailed, c.subscribe, "t")
    assert e.reason_code == 0x87 and e.reason_codes == [0x87]
    assert c.is_connected
    link.puback = 0x10  # No matching subscribers: a success code
    assert c.publish("t", b"x", qos=1) > 0
    e = raises(ConnectRefused, SyncClient("s").connect, Link(connack=0x8C))
    assert e.reason_code == 0x8C


def test_incoming_qos_1_and_2_are_acknowledged_and_kept_while_waiting():
    link = Link()
    c = SyncClient("s")
    c.connect(link)
    link.inject(C.encode_bytes(C.Publish("in/1", b"a", qos=1, packet_id=5)))
    link.inject(C.encode_bytes(C.Publish("in/2", b"b", qos=2, packet_id=6)))
    c.ping()  # the messages arrive while ping waits: they are kept
    assert [p.type for p in link.sent[-3:]] == [C.PINGREQ, C.PUBACK, C.PUBREC]
    link.inject(C.encode_bytes(C.Ack(C.PUBREL, 6)))
    assert c.wait_msg(1).topic == "in/1"
    m = c.wait_msg(1)
    assert (m.topic, m.payload, m.qos, m.packet_id) == ("in/2", b"b", 2, 6)
    assert c.wait_msg(0.05) is None
    assert link.sent[-1] == C.Ack(C.PUBCOMP, 6)
    seen = []
    c.set_callback(seen.append)
    link.inject(C.encode_bytes(C.Publish("in/3", b"c")))
    assert c.check_msg() is seen[0] and seen[0].payload == b"c"


def test_server_disconnect_and_protocol_violation_are_typed():
    link = Link()
    c = SyncClient("s")
    c.connect(link)
    link.inject(C.encode_bytes(C.Disconnect(0x8B, {P.PROP_REASON_STRING: "bye"})))
    e = raises(NetworkError, c.wait_msg, 1)
    assert e.reason_code == 0x8B and "bye" in str(e)
    assert not c.is_connected and link.closed
    link = Link()
    c.connect(link)  # the same client connects again
    link.inject(C.encode_bytes(C.Ack(C.PUBACK, 99)))  # for nothing we sent
    e = raises(ProtocolError, c.check_msg)
    assert e.reason_code == 0x82
    assert link.sent[-1] == C.Disconnect(0x82)  # the goodbye went out first
    assert not c.is_connected
    raises(NetworkError, c.publish, "t", b"x")


def test_silence_times_out_and_keeps_the_connection():
    link = Link()
    c = SyncClient("s", timeout=0.2)
    c.connect(link)
    link.quiet = True
    raises(MqttTimeout, c.publish, "t", b"x", 1)
    raises(MqttTimeout, c.ping, 0.1)
    assert c.is_connected
