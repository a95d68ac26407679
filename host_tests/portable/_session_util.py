"""Helpers for the portable session tests (CPython under pytest AND MicroPython).

The tests play the server with our own codec: packets are built as codec objects,
encoded with ``encode_bytes`` and fed to ``session.reader``; what the session queued
in ``out[:out_len]`` (+ ``out_tail``) is decoded back into codec objects. Time is a
plain int passed as ``now_ms``.
"""

from _check import raises

from mqtt_v5 import session as S
from mqtt_v5._compat import ticks_add
from mqtt_v5._server_codec import Ack, Connack, Disconnect, decode, encode_bytes
from mqtt_v5.errors import ProtocolError, UsageError

T0 = 1000
# The last millisecond before the ticks counter wraps (2**30 on CPython and on the
# MicroPython ports we target): ticks_add(WRAP, 1) == 0.
WRAP = ticks_add(0, -1)


def fail(msg):
    raise AssertionError(msg)


def eq(got, want, what=""):
    if got != want:
        fail("%s\n   got %r\n  want %r" % (what, got, want))


def new(client_id="dev1", **kw):
    return S.Session(client_id, **kw)


def out_bytes(s):
    """Everything queued for the wire: ``out[:out_len]`` then ``out_tail``."""
    data = bytes(s.out[:s.out_len])
    if s.out_tail is not None:
        data += bytes(s.out_tail)
    return data


def take(s, now=T0):
    """Decode the packet the session queued and mark it written at ``now``."""
    if not s.out_len and s.out_tail is None:
        fail("the session queued nothing")
    pkt = decode(out_bytes(s))
    s.flushed(now)
    return pkt


def nothing_sent(s):
    if s.out_len or s.out_tail is not None:
        fail("unexpected output: %r" % (decode(out_bytes(s)),))


def feed(s, *packets):
    """Feed codec packets (or raw bytes) to the session's reader."""
    for p in packets:
        data = p if isinstance(p, (bytes, bytearray)) else encode_bytes(p)
        n = s.reader.feed(data)
        if n != len(data):
            fail("reader buffer full")


def connect(s, now=T0, props=None, session_present=False, **connect_kw):
    """CONNECT, check it left, answer CONNACK; returns the decoded CONNECT."""
    s.connect(now, **connect_kw)
    pkt = take(s, now)
    feed(s, Connack(0, session_present, props))
    eq(s.poll(now), S.EV_CONNACK, "CONNACK event")
    eq(s.state, S.CONNECTED, "state")
    return pkt


def connected(now=T0, props=None, session_present=False, connect_kw=None, **kw):
    """A new session, connected with a CONNACK carrying ``props``."""
    s = new(**kw)
    connect(s, now, props, session_present, **(connect_kw or {}))
    nothing_sent(s)
    return s


def poll(s, now=T0):
    """poll once, returning (event, packet sent or None); a sent packet is taken."""
    ev = s.poll(now)
    pkt = take(s, now) if s.out_len or s.out_tail is not None else None
    return ev, pkt


def drain(s, now=T0):
    """poll until EV_NONE; returns the list of (event, packet sent or None)."""
    got = []
    for _ in range(1000):
        ev, pkt = poll(s, now)
        if ev == S.EV_NONE:
            if pkt is not None:
                fail("EV_NONE with output %r" % (pkt,))
            return got
        got.append((ev, pkt))
    fail("poll never returned EV_NONE")


def pump_all(s, now=T0):
    """pump() until it has nothing more; returns the packets sent."""
    sent = []
    for _ in range(1000):
        tok = s.pump()
        if tok is None:
            nothing_sent(s)
            return sent
        if tok is False:
            fail("pump refused a queued message: %r" % (s.ev_error,))
        sent.append(take(s, now))
    fail("pump never finished")


def protocol_failure(s, rc, now=T0):
    """The next poll must raise ProtocolError ``rc``, queue DISCONNECT ``rc`` and
    leave the session DISCONNECTED. Returns the error."""
    e = raises(ProtocolError, s.poll, now)
    eq(e.reason_code, rc, "ProtocolError reason code (%s)" % e)
    eq(s.state, S.DISCONNECTED, "state after a protocol error")
    # DISCONNECT, remaining length 1, the reason code (MQTT 5.0 3.14), spelled out
    # rather than trusting our own decoder alone
    eq(out_bytes(s), bytes([0xE0, 0x01, rc]), "DISCONNECT bytes queued")
    eq(take(s, now), Disconnect(rc), "DISCONNECT queued")
    return e


def usage_error(rc, fn, *args, **kw):
    """fn must raise UsageError ``rc`` (None: any); returns it."""
    e = raises(UsageError, fn, *args, **kw)
    if rc is not None:
        eq(e.reason_code, rc, "UsageError reason code (%s)" % e)
    return e


def ack(ptype, pid, rc=0):
    return Ack(ptype, pid, rc)
