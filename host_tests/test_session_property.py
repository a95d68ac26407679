"""Property-based tests of the session core (hypothesis; CPython only).

A model server talks to a real ``Session`` through its sans-IO API while hypothesis
interleaves publishes (QoS 0/1/2), acknowledgements in any order (some of them
failures), messages from the server, lost connections and reconnects with a random
Session Present. Checked throughout:

* never more QoS 1/2 PUBLISH packets unacknowledged on one connection than the
  server's Receive Maximum [MQTT-3.3.4-7];
* an inbound QoS 2 message is delivered at most once, whatever the server resends;
* no QoS >= 1 message is lost: at the end, once the link stays up and the server
  acknowledges everything, every message the session accepted has been reported
  exactly once (done, failed, refused by the new server's limits, or orphaned);
* random bytes from the server make the session raise MqttError subclasses only.

Profiles (host_tests/conftest.py): ``ci`` by default, ``fuzz`` with
HYPOTHESIS_PROFILE=fuzz (``make fuzz``).
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from mqtt_v5 import properties as P
from mqtt_v5 import session as S
from mqtt_v5._server_codec import (
    CONNECT,
    DISCONNECT,
    PINGREQ,
    PUBACK,
    PUBCOMP,
    PUBLISH,
    PUBREC,
    PUBREL,
    Ack,
    Connack,
    Ping,
    Publish,
    decode,
    encode_bytes,
)
from mqtt_v5._server_codec import PINGRESP as PINGRESP_TYPE
from mqtt_v5.errors import MqttError, MqttTimeout, QueueFull

CLIENT_RM = 3  # the Receive Maximum the client advertises


class SessionMachine(RuleBasedStateMachine):
    # ------------------------------------------------------------- setup --

    @initialize(max_inflight=st.integers(1, 6), rm=st.integers(1, 5),
                clean=st.booleans())
    def setup(self, max_inflight, rm, clean):
        self.s = S.Session("prop", max_inflight=max_inflight, receive_maximum=CLIENT_RM,
                           max_queued=40, max_queued_bytes=10000)
        self.now = 1000
        self.next_msg = 1
        # client side bookkeeping
        self.accepted = {}  # token -> (qos, msg id)
        self.reported = {}  # token -> how it ended
        self.delivered = {}  # server message id -> times delivered (QoS 2 only)
        # server side
        self.srv_connected = False
        self.srv_has_session = False
        self.srv_rm = rm
        self.srv_in = {}  # pid -> [qos, msg id, state 'pub'|'rec'] (client -> server)
        self.srv_received = set()  # msg ids the server took
        self.sent_this_conn = set()  # pids PUBLISHed on this connection, not acked
        self.rel_this_conn = set()  # pids PUBRELeased on this connection, not completed
        self.srv_out = {}  # pid -> [qos, msg id, state 'sent'|'rec'] (server -> client)
        self.srv_next_pid = 0
        self.srv_next_msg = 1
        self.do_connect(clean, False, rm)

    # ----------------------------------------------------------- plumbing --

    def transmit(self):
        """Everything the session queued goes to the model server."""
        s = self.s
        while s.out_len:
            data = bytes(s.out[:s.out_len])
            if s.out_tail is not None:
                data += bytes(s.out_tail)
            s.flushed(self.now)
            if self.srv_connected:
                self.server_receives(decode(data))

    def server_send(self, pkt):
        if not self.srv_connected:
            return
        data = encode_bytes(pkt)
        rd = self.s.reader
        if rd.end + len(data) > len(rd.buf):
            self.poll_all()
        assert self.s.reader.feed(data) == len(data)

    def poll_all(self):
        for _ in range(10000):
            if self.poll_one() == S.EV_NONE:
                return
        raise AssertionError("poll never settled")

    def poll_one(self):
        s = self.s
        ev = s.poll(self.now)
        tok = s.ev_token
        self.transmit()
        if ev == S.EV_MESSAGE:
            m = s.msg
            if m.qos == 2:
                mid = int(m.payload())
                self.delivered[mid] = self.delivered.get(mid, 0) + 1
                assert self.delivered[mid] == 1, f"inbound QoS 2 message {mid} delivered twice"
        elif ev in (S.EV_PUBLISH_DONE, S.EV_PUBLISH_FAILED):
            self.report(tok, "done" if ev == S.EV_PUBLISH_DONE else f"failed 0x{s.ev_rc:02X}")
            if ev == S.EV_PUBLISH_DONE:
                assert self.accepted[tok][1] in self.srv_received
        elif ev == S.EV_CONNACK:
            self.after_connack()
        return ev

    def report(self, tok, how):
        assert tok in self.accepted, f"unknown token {tok!r} reported"
        assert tok not in self.reported, f"{tok!r} reported twice: {self.reported[tok]}, {how}"
        self.reported[tok] = how

    def after_connack(self):
        s = self.s
        for _pid, tok in s.ev_orphans:
            self.report(tok, "orphaned")
        s.ev_orphans = []
        self.pump_all()

    def pump_all(self):
        s = self.s
        for _ in range(1000):
            tok = s.pump()
            if tok is None:
                return
            if tok is False:
                self.report(s.ev_token, "refused")
                continue
            self.transmit()
        raise AssertionError("pump never settled")

    # ------------------------------------------------------- model server --

    def server_receives(self, pkt):
        t = pkt.type
        if t == PUBLISH:
            if pkt.qos == 0:
                return
            pid = pkt.packet_id
            assert pid not in self.sent_this_conn, f"packet id {pid} reused while in flight"
            self.sent_this_conn.add(pid)
            assert len(self.sent_this_conn) <= self.srv_rm, (
                f"{len(self.sent_this_conn)} PUBLISH in flight, Receive Maximum {self.srv_rm}")
            mid = int(pkt.payload)
            self.srv_received.add(mid)
            cur = self.srv_in.get(pid)
            if cur is not None and cur[2] == "rec":
                # A resend after a reconnect: our PUBREC was lost. Answer PUBREC
                # again when it acks; the message is not taken twice.
                assert pkt.dup
            self.srv_in[pid] = [pkt.qos, mid, "pub"]
        elif t == PUBREL:
            cur = self.srv_in.get(pkt.packet_id)
            if cur is None:
                # it completed this one before the link dropped
                self.server_send(Ack(PUBCOMP, pkt.packet_id, 0x92))
                self.sent_this_conn.discard(pkt.packet_id)
            else:
                assert cur[2] != "pub"  # PUBREL only after our PUBREC
                cur[2] = "rel"
                self.rel_this_conn.add(pkt.packet_id)
        elif t == PUBACK or t == PUBCOMP:
            if pkt.reason_code == 0:
                assert self.srv_out.pop(pkt.packet_id)[0] == (1 if t == PUBACK else 2)
            else:
                # PUBCOMP 0x92 answers a duplicate PUBREL of ours
                assert (t, pkt.reason_code) == (PUBCOMP, 0x92)
                assert pkt.packet_id not in self.srv_out
        elif t == PUBREC:
            cur = self.srv_out[pkt.packet_id]
            assert cur[0] == 2
            cur[2] = "rec"
        elif t == PINGREQ:
            self.server_send(Ping(PINGRESP_TYPE))
        elif t == DISCONNECT or t == CONNECT:
            pass
        else:
            raise AssertionError(f"unexpected {pkt!r}")

    def server_ack_one(self, pid, fail):
        """The server acknowledges what it holds for ``pid``."""
        qos, _mid, state = self.srv_in[pid]
        if qos == 1:
            del self.srv_in[pid]
            self.sent_this_conn.discard(pid)
            self.server_send(Ack(PUBACK, pid, 0x80 if fail else 0))
        elif state == "pub":
            if fail:
                del self.srv_in[pid]
                self.sent_this_conn.discard(pid)
                self.server_send(Ack(PUBREC, pid, 0x97))
            else:
                self.srv_in[pid][2] = "rec"
                self.server_send(Ack(PUBREC, pid))
        else:
            # "rel" ("rec" is never picked: no resends on the same connection
            # [MQTT-4.4.0-1], it waits for our PUBREL)
            assert state == "rel"
            del self.srv_in[pid]
            self.sent_this_conn.discard(pid)
            self.rel_this_conn.discard(pid)
            self.server_send(Ack(PUBCOMP, pid))

    def do_connect(self, clean, keep_session, rm):
        s = self.s
        s.connect(self.now, clean_start=clean, keep_alive_s=30,
                  session_expiry_s=0 if clean else 600)
        self.srv_connected = True
        self.transmit()
        present = (not clean) and keep_session and self.srv_has_session
        if not present:
            self.srv_in = {}
            self.srv_out = {}
        self.srv_has_session = True
        self.srv_rm = rm
        self.sent_this_conn = set()
        self.rel_this_conn = set()
        self.server_send(Connack(0, present, {P.PROP_RECEIVE_MAXIMUM: rm}))
        self.poll_all()
        assert s.state == S.CONNECTED
        assert s.ev_session_present == present
        if present:
            # the server resends what it had not finished [MQTT-4.4.0-1]
            for pid in sorted(self.srv_out):
                qos, mid, state = self.srv_out[pid]
                if state == "sent":
                    self.server_send(Publish("in", b"%d" % mid, qos, dup=True, packet_id=pid))
                else:
                    self.server_send(Ack(PUBREL, pid))

    # -------------------------------------------------------------- rules --

    @rule(qos=st.integers(0, 2))
    def publish(self, qos):
        mid = self.next_msg
        self.next_msg += 1
        tok = f"m{mid}"
        try:
            self.s.publish(b"t", b"%d" % mid, qos, token=tok if qos else None)
        except QueueFull:
            return
        if qos:
            self.accepted[tok] = (qos, mid)
        self.transmit()

    def ackable(self):
        # Only what came on this connection: a server answers the PUBLISH or PUBREL it
        # receives; what it took before the link dropped (its answer lost) is answered
        # again when the client resends it [MQTT-4.4.0-1], not before.
        return sorted(p for p, v in self.srv_in.items() if v[2] != "rec" and (
            p in self.sent_this_conn or p in self.rel_this_conn))

    @precondition(lambda self: self.srv_connected and self.ackable())
    @rule(data=st.data(), fail=st.booleans())
    def server_acks(self, data, fail):
        pid = data.draw(st.sampled_from(self.ackable()))
        self.server_ack_one(pid, fail and data.draw(st.integers(0, 3)) == 0)

    @precondition(lambda self: self.srv_connected and len(self.srv_out) < CLIENT_RM)
    @rule(qos=st.integers(0, 2))
    def server_publishes(self, qos):
        mid = self.srv_next_msg
        self.srv_next_msg += 1
        pid = 0
        if qos:
            pid = self.srv_next_pid
            while True:
                pid = pid % 65535 + 1
                if pid not in self.srv_out:
                    break
            self.srv_next_pid = pid
            self.srv_out[pid] = [qos, mid, "sent"]
        self.server_send(Publish("in", b"%d" % mid, qos, packet_id=pid))

    @precondition(lambda self: self.srv_connected and any(
        v[2] == "rec" for v in self.srv_out.values()))
    @rule(data=st.data())
    def server_pubrel(self, data):
        pid = data.draw(st.sampled_from(sorted(p for p, v in self.srv_out.items()
                                               if v[2] == "rec")))
        self.server_send(Ack(PUBREL, pid))

    @rule(dup_of=st.integers(0, 10))
    def server_resends_qos2(self, dup_of):
        # A duplicate of an inbound QoS 2 message not yet released (legal to handle).
        pids = sorted(p for p, v in self.srv_out.items() if v[0] == 2 and v[2] == "sent")
        if self.srv_connected and pids:
            pid = pids[dup_of % len(pids)]
            self.server_send(Publish("in", b"%d" % self.srv_out[pid][1], 2, dup=True,
                                     packet_id=pid))

    @rule()
    def client_polls(self):
        self.poll_all()

    @rule()
    def client_polls_once(self):
        # one packet: the link may drop between a message and its acknowledgement
        self.poll_one()

    @rule()
    def client_pumps(self):
        self.pump_all()

    @rule(ms=st.integers(0, 40000))
    def time_passes(self, ms):
        self.now += ms
        try:
            self.s.on_timer(self.now)
        except MqttTimeout:
            self.link_drops(False)
            return
        self.transmit()

    @precondition(lambda self: self.srv_connected)
    @rule(server_keeps_session=st.booleans())
    def link_drops(self, server_keeps_session):
        self.s.connection_lost()
        self.srv_connected = False
        if not server_keeps_session:
            self.srv_has_session = False

    @precondition(lambda self: not self.srv_connected)
    @rule(clean=st.booleans(), keep=st.booleans(), rm=st.integers(1, 5))
    def reconnect(self, clean, keep, rm):
        self.do_connect(clean, keep, rm)

    # --------------------------------------------------------- invariants --

    @invariant()
    def bookkeeping(self):
        if not hasattr(self, "s"):
            return
        s = self.s
        assert 0 <= s.inflight() <= s.max_inflight
        assert s._queued_bytes >= 0
        assert s.out_len == 0

    def teardown(self):
        if not hasattr(self, "s"):
            return
        # Settle: the link stays up and the server acknowledges everything.
        if not self.srv_connected:
            self.do_connect(False, True, self.srv_rm)
        for _ in range(500):
            self.poll_all()
            self.pump_all()
            if self.ackable():
                self.server_ack_one(self.ackable()[0], False)
                continue
            pending = [p for p, v in self.srv_out.items() if v[2] == "rec"]
            if pending:
                self.server_send(Ack(PUBREL, pending[0]))
                continue
            if not self.s.inflight() and not self.s.queued():
                break
        self.poll_all()
        assert self.s.inflight() == 0, "messages never completed"
        assert self.s.queued() == 0, "queued messages never sent"
        lost = [t for t in self.accepted if t not in self.reported]
        assert not lost, f"accepted but never reported: {lost!r}"


SessionMachine.TestCase.settings = settings(
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    stateful_step_count=60,
)
TestSessionInterleavings = SessionMachine.TestCase


# ------------------------------------------------------------ random bytes --

def _connected_session(max_packet_size=256):
    s = S.Session("fuzz", max_packet_size=max_packet_size, topic_alias_maximum=2)
    s.connect(0, clean_start=False)
    s.flushed(0)
    s.reader.feed(encode_bytes(Connack(0, False)))
    assert s.poll(0) == S.EV_CONNACK
    s.publish(b"t", b"x", 1)  # something in flight for acks to hit
    s.flushed(0)
    s.publish(b"t", b"y", 2)
    s.flushed(0)
    return s


def _run_input(s, chunks):
    """Feed chunks, poll to EV_NONE after each; only MqttError may escape."""
    for chunk in chunks:
        data = chunk
        while data:
            n = s.reader.feed(data)
            data = data[n:]
            try:
                for _ in range(1000):
                    ev = s.poll(0)
                    s.flushed(0)
                    if ev == S.EV_NONE:
                        break
            except MqttError:
                assert s.state == S.DISCONNECTED
                return
            if n == 0 and data:
                return  # the reader is full of an incomplete packet


@given(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=5))
def test_random_bytes_raise_only_mqtt_errors(chunks):
    _run_input(_connected_session(), chunks)


@given(st.lists(st.binary(min_size=0, max_size=64), min_size=1, max_size=5))
def test_random_bytes_before_connack_raise_only_mqtt_errors(chunks):
    s = S.Session("fuzz", max_packet_size=128)
    s.connect(0)
    s.flushed(0)
    _run_input(s, chunks)


_VALID_HEADS = st.sampled_from([
    b"\x30", b"\x32", b"\x34", b"\x3b", b"\x40\x02\x00", b"\x50\x02\x00", b"\x62\x02\x00",
    b"\x70\x02\x00", b"\x90", b"\xb0", b"\xd0\x00", b"\xe0", b"\xf0", b"\x20",
])


@given(st.lists(st.tuples(_VALID_HEADS, st.binary(max_size=40)), min_size=1, max_size=8))
def test_plausible_packets_raise_only_mqtt_errors(parts):
    # Right packet types with random bodies reach deeper than uniform random bytes.
    chunks = []
    for head, body in parts:
        if len(head) == 1:
            chunks.append(head + bytes([len(body)]) + body)
        else:
            chunks.append(head + body[:1])
    _run_input(_connected_session(), chunks)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from([
    Publish("a/b", b"1", 1, packet_id=9),
    Publish("a/b", b"2", 2, packet_id=10),
    Publish("a/b", b"3", 2, dup=True, packet_id=10),
    Publish("a/b", b"4", properties={P.PROP_TOPIC_ALIAS: 1}),
    Publish("", b"5", properties={P.PROP_TOPIC_ALIAS: 1}),
    Publish("", b"6", properties={P.PROP_TOPIC_ALIAS: 2}),
    Ack(PUBREL, 10), Ack(PUBREL, 11), Ack(PUBACK, 1), Ack(PUBREC, 2), Ack(PUBCOMP, 2),
    Ack(PUBACK, 2), Ping(PINGRESP_TYPE), Connack(),
]), min_size=1, max_size=12), st.integers(1, 7))
def test_valid_packets_in_any_order_raise_only_mqtt_errors(packets, split):
    data = b"".join(encode_bytes(p) for p in packets)
    chunks = [data[i:i + split] for i in range(0, len(data), split)]
    _run_input(_connected_session(), chunks)
