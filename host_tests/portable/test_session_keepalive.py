"""Session: keep-alive deadlines with a fake clock, including across the ticks wrap.

Times are built with ``ticks_add`` so the same test works with CPython's 2**30 ticks
period and MicroPython's. Portable: runs under pytest and under real MicroPython.
"""

from _session_util import T0, WRAP, connect, connected, eq, feed, new, nothing_sent, take

from mqtt_v5 import session as S
from mqtt_v5._compat import ticks_add
from mqtt_v5._server_codec import PINGREQ, PUBACK, Ack, Ping, Publish
from mqtt_v5._server_codec import PINGRESP as PINGRESP_TYPE
from mqtt_v5.errors import MqttTimeout

PINGRESP = Ping(PINGRESP_TYPE)


def at(base, ms):
    return ticks_add(base, ms)


def expect_timeout(s, now):
    try:
        s.on_timer(now)
    except MqttTimeout as e:
        eq(s.state, S.DISCONNECTED)
        nothing_sent(s)
        return e
    raise AssertionError("no MqttTimeout at %d" % now)


def ping_cycle(base):
    """One full keep-alive cycle starting at ``base`` (keep alive 10 s)."""
    s = new()
    connect(s, base, keep_alive_s=10)
    eq(s.next_timeout(base), 10000)
    eq(s.next_timeout(at(base, 4000)), 6000)
    s.on_timer(at(base, 9999))
    nothing_sent(s)
    t1 = at(base, 10000)
    eq(s.next_timeout(t1), 0)
    s.on_timer(t1)
    eq(take(s, t1), Ping(PINGREQ))
    # waiting for PINGRESP: half the keep alive by default
    eq(s.next_timeout(t1), 5000)
    eq(s.next_timeout(at(t1, 3000)), 2000)
    s.on_timer(at(t1, 3000))  # nothing more to do meanwhile
    nothing_sent(s)
    t2 = at(t1, 4000)
    feed(s, PINGRESP)
    eq(s.poll(t2), S.EV_CONTINUE)
    nothing_sent(s)
    eq(s.state, S.CONNECTED)
    # the next deadline counts from the PINGREQ we sent (t1) and the PINGRESP (t2)
    eq(s.next_timeout(t2), 6000)
    s.on_timer(at(t1, 9999))
    nothing_sent(s)
    s.on_timer(at(t1, 10000))
    eq(take(s), Ping(PINGREQ))
    return s


def test_ping_cycle():
    ping_cycle(T0)


def test_ping_cycle_across_the_ticks_wrap():
    for offset in (-10000, -5000, -1, 0, 1):
        ping_cycle(at(WRAP, offset))


def test_dead_link():
    s = connected(connect_kw={"keep_alive_s": 10})
    s.on_timer(at(T0, 10000))
    take(s, at(T0, 10000))
    s.on_timer(at(T0, 14999))
    eq(s.state, S.CONNECTED)
    e = expect_timeout(s, at(T0, 15000))
    eq(isinstance(e, MqttTimeout), True)
    eq(s.next_timeout(at(T0, 15000)), -1)


def test_dead_link_across_the_wrap():
    base = at(WRAP, -12000)
    s = new()
    connect(s, base, keep_alive_s=10)
    t1 = at(base, 10000)
    s.on_timer(t1)
    take(s, t1)
    s.on_timer(at(t1, 4999))  # past the wrap point, not yet late
    eq(s.state, S.CONNECTED)
    expect_timeout(s, at(t1, 5000))


def test_ping_timeout_option():
    s = connected(ping_timeout_ms=700, connect_kw={"keep_alive_s": 10})
    s.on_timer(at(T0, 10000))
    take(s)
    eq(s.next_timeout(at(T0, 10000)), 700)
    s.on_timer(at(T0, 10699))
    eq(s.state, S.CONNECTED)
    expect_timeout(s, at(T0, 10700))


def test_short_keep_alive_waits_a_whole_keep_alive_for_pingresp():
    s = connected(connect_kw={"keep_alive_s": 1})
    s.on_timer(at(T0, 1000))
    take(s)
    eq(s.next_timeout(at(T0, 1000)), 1000)


def test_traffic_postpones_the_ping():
    s = connected(connect_kw={"keep_alive_s": 10})
    # we send at +6 s and the server sends at +7 s: the next PINGREQ is due at +16 s
    s.publish(b"t", b"x", 1)
    take(s, at(T0, 6000))
    feed(s, Ack(PUBACK, 1))
    eq(s.poll(at(T0, 7000)), S.EV_PUBLISH_DONE)
    eq(s.next_timeout(at(T0, 7000)), 9000)
    s.on_timer(at(T0, 15999))
    nothing_sent(s)
    s.on_timer(at(T0, 16000))
    eq(take(s), Ping(PINGREQ))


def test_silent_server_is_pinged_even_while_we_send():
    # Only sending would satisfy the server, but a link where nothing comes back for a
    # keep alive is checked with a PINGREQ.
    s = connected(connect_kw={"keep_alive_s": 10})
    for k in range(1, 5):
        s.publish(b"t", b"x", 0)
        take(s, at(T0, 2500 * k))
    eq(s.next_timeout(at(T0, 9000)), 1000)
    s.on_timer(at(T0, 10000))
    eq(take(s), Ping(PINGREQ))


def test_received_publish_counts_as_traffic():
    s = connected(connect_kw={"keep_alive_s": 10})
    s.publish(b"t", b"", 0)
    take(s, at(T0, 9000))
    feed(s, Publish("in", b"x"))
    eq(s.poll(at(T0, 9500)), S.EV_MESSAGE)
    eq(s.next_timeout(at(T0, 9500)), 9500)  # due 10 s after what we sent at +9 s


def test_timer_waits_for_pending_output():
    s = connected(connect_kw={"keep_alive_s": 10})
    s.publish(b"t", b"x")  # not flushed yet
    s.on_timer(at(T0, 20000))
    eq(take(s, at(T0, 20000)), Publish("t", b"x"))
    s.on_timer(at(T0, 20000))
    eq(take(s), Ping(PINGREQ))  # the link was silent for 20 s


def test_keep_alive_zero_never_pings():
    s = connected(connect_kw={"keep_alive_s": 0})
    eq(s.next_timeout(T0), -1)
    s.on_timer(at(T0, 10 ** 6))
    nothing_sent(s)


def test_no_deadlines_while_disconnected():
    s = new()
    eq(s.next_timeout(T0), -1)
    s.on_timer(T0)
    nothing_sent(s)
    s = connected()
    s.connection_lost()
    eq(s.next_timeout(at(T0, 10 ** 6)), -1)
    s.on_timer(at(T0, 10 ** 6))
    nothing_sent(s)


def test_connack_timeout_across_the_wrap():
    base = at(WRAP, -100)
    s = new(connect_timeout_ms=1000)
    s.connect(base)
    take(s, base)
    eq(s.next_timeout(at(base, 500)), 500)
    s.on_timer(at(base, 999))
    eq(s.state, S.CONNECTING)
    expect_timeout(s, at(base, 1000))


def test_ping_state_does_not_survive_a_reconnect():
    s = connected(connect_kw={"keep_alive_s": 10})
    s.on_timer(at(T0, 10000))
    take(s)
    s.connection_lost()
    t = at(T0, 20000)
    connect(s, t, keep_alive_s=10)
    eq(s.next_timeout(t), 10000)
    s.on_timer(at(t, 6000))  # an old PINGREQ must not time this connection out
    eq(s.state, S.CONNECTED)
