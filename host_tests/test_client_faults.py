"""MqttClient under network faults: a FaultProxy between our client and Mosquitto cuts,
resets, stalls and refuses; paho (connected straight to the broker) is the consumer that
counts what really arrived."""

from __future__ import annotations

import asyncio
import collections

import pytest
from client_kit import Paho, Recorder, tapped, unique, wait_until
from netutil import DOWN, UP, FaultProxies

from mqtt_v5 import _server_codec as codec
from mqtt_v5.client import (
    Connected,
    ConnectOptions,
    Disconnected,
    MqttClient,
    ReconnectConfig,
    Reconnecting,
)
from mqtt_v5.errors import MqttTimeout, NetworkError, QueueFull

pytestmark = pytest.mark.broker

FAST = {"initial_delay": 0.05, "max_delay": 0.5, "jitter": 0}


@pytest.fixture
def fault_proxy():
    with FaultProxies() as make:
        yield make


def client_via(proxy, rec=None, **kw):
    kw.setdefault("reconnect_config", ReconnectConfig(**FAST))
    kw.setdefault("connect_timeout", 2.0)
    c = MqttClient(ConnectOptions(unique("faulty"), **kw))
    if rec is not None:
        c.on_connection_event(rec)
    return c


async def test_cut_reconnects_with_events_and_resubscribes(mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    topic = unique("cut")
    rec = Recorder()
    c = client_via(proxy, rec)
    got = []
    await c.connect(proxy.url)
    await c.subscribe(topic, lambda m: got.append(m.payload), qos=1)
    proxy.cut()
    ev = await rec.wait(Connected, 2)
    assert ev.session_present is False  # clean start, no session expiry: the server forgot us
    assert rec.kinds() == ["Connected", "Disconnected", "Reconnecting", "Connected"]
    d = rec.of(Disconnected)[0]
    assert isinstance(d.error, NetworkError)
    assert not d.by_server
    r = rec.of(Reconnecting)[0]
    assert (r.attempt, r.delay) == (1, 0.05)
    # The client subscribed again by itself: a message now reaches the callback.
    paho = Paho(mosquitto.plain_port).connect()
    try:
        paho.publish(topic, b"after-cut", qos=1)
        await wait_until(lambda: got, what="message after re-subscribe")
    finally:
        paho.disconnect()
    assert got == [b"after-cut"]
    assert proxy.connections == 2
    await c.disconnect()


async def test_heap_is_collected_once_the_lost_link_is_closed(mosquitto, fault_proxy,
                                                             monkeypatch):
    """The supervisor collects the heap after it closed the lost link, before its first
    attempt: on MicroPython the closed session's garbage then leaves room low in the heap for
    what reconnecting makes, not in the way of the new TLS session's buffers (EC, unix port:
    a lost link needed 98 KiB from .mpy, 96-97 with it)."""
    from mqtt_v5 import _cold

    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    rec = Recorder()
    c = client_via(proxy, rec)
    seen = []
    monkeypatch.setattr(_cold, "heap_collect",
                        lambda: seen.append((c._transport._closed, rec.kinds())))
    await c.connect(proxy.url)
    proxy.cut()
    await rec.wait(Connected, 2)
    assert seen == [(True, ["Connected", "Disconnected"])]
    await c.disconnect()


async def test_reset_and_mid_packet_cuts_reconnect(mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    rec = Recorder()
    c = client_via(proxy, rec)
    await c.connect(proxy.url)
    proxy.reset()
    await rec.wait(Connected, 2)
    # A PUBLISH cut after 7 of its bytes reached the broker (mid-packet, upstream).
    proxy.cut_after_bytes(7, UP)
    d = await c.begin_publish(unique("mid") + "/topic", b"p" * 100, qos=1)
    await rec.wait(Connected, 3)
    assert await asyncio.wait_for(d.wait(), 5) > 0  # resent after the reconnect
    # A cut in the middle of what the broker sends back (the PUBACK).
    proxy.cut_after_bytes(2, DOWN)
    d = await c.begin_publish(unique("mid") + "/topic", b"q", qos=1)
    await rec.wait(Connected, 4)
    assert await asyncio.wait_for(d.wait(), 5) > 0
    assert all(isinstance(e.error, NetworkError) for e in rec.of(Disconnected))
    await c.disconnect()


async def test_stall_is_detected_by_keep_alive(mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    rec = Recorder()
    c = client_via(proxy, rec, keep_alive=1, connect_timeout=1.0)
    await c.connect(proxy.url)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    proxy.stall()
    d = await rec.wait(Disconnected, 1, timeout=5)
    detected = loop.time() - t0
    assert isinstance(d.error, MqttTimeout), d
    assert detected < 3.5, detected  # keep alive 1 s + PINGRESP timeout 1 s (+ slack)
    proxy.resume()
    await rec.wait(Connected, 2, timeout=5)
    assert c.is_connected
    await c.disconnect()


async def test_backoff_doubles_up_to_max_delay(mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    rec = Recorder()
    c = client_via(proxy, rec)
    await c.connect(proxy.url)
    proxy.refuse(True)
    proxy.cut()
    await rec.wait(Reconnecting, 6, timeout=5)
    proxy.refuse(False)
    await rec.wait(Connected, 2, timeout=5)
    delays = [e.delay for e in rec.of(Reconnecting)]
    assert delays[:6] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert [e.attempt for e in rec.of(Reconnecting)] == list(range(1, len(delays) + 1))
    await c.disconnect()


async def test_offline_queue_bounds_then_delivery(mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    topic = unique("offline")
    paho = Paho(mosquitto.plain_port).connect()
    paho.subscribe(topic, qos=1)
    rec = Recorder()
    c = client_via(proxy, rec, max_queued=5, max_queued_bytes=1000)
    await c.connect(proxy.url)
    proxy.refuse(True)
    proxy.cut()
    await rec.wait(Disconnected)
    try:
        queued = [await c.begin_publish(topic, b"%d" % i, qos=1) for i in range(4)]
        await c.publish(topic, b"q0", qos=0)  # QoS 0 queues too (returns at once)
        with pytest.raises(QueueFull):
            await c.begin_publish(topic, b"too many", qos=1)
        with pytest.raises(QueueFull):
            await c.publish(topic, b"x", qos=0)
        assert not any(d.done() for d in queued)
        proxy.refuse(False)
        await asyncio.wait_for(asyncio.gather(*(d.wait() for d in queued)), 5)
        msgs = await paho.wait_messages(5)
    finally:
        paho.disconnect()
    assert [m.payload for m in msgs] == [b"0", b"1", b"2", b"3", b"q0"]  # in order
    # The byte bound: 1000 bytes of payload + topic.
    proxy.refuse(True)
    proxy.cut()
    await rec.wait(Disconnected, 2)
    d = await c.begin_publish(topic, b"x" * 900, qos=1)
    with pytest.raises(QueueFull):
        await c.begin_publish(topic, b"x" * 100, qos=1)
    proxy.refuse(False)
    await asyncio.wait_for(d.wait(), 5)
    await c.disconnect()


async def test_max_attempts_gives_up_with_network_error(mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    rec = Recorder()
    c = client_via(proxy, rec, reconnect_config=ReconnectConfig(max_attempts=3, **FAST))
    await c.connect(proxy.url)
    proxy.refuse(True)
    proxy.cut()
    await rec.wait(Disconnected)
    d = await c.begin_publish(unique("gaveup"), b"lost", qos=1)
    with pytest.raises(NetworkError) as e:
        await asyncio.wait_for(d.wait(), 5)
    assert "3" in str(e.value)
    assert len(rec.of(Reconnecting)) == 3
    n = proxy.connections
    await asyncio.sleep(0.6)  # longer than max_delay: no further attempt
    assert len(rec.of(Reconnecting)) == 3
    assert proxy.connections == n
    assert not c.is_connected
    # Publishing after giving up is refused, not queued forever... or queued for a later
    # connect(); either way it must not hang.
    await c.disconnect()


async def _publish_all(c, topic, n, qos, done):
    deliveries = []
    for i in range(n):
        deliveries.append(await c.begin_publish(topic, b"%d" % i, qos=qos))
        done[qos] = i + 1
        if i % 50 == 0:
            await asyncio.sleep(0)  # let the fault injector in
    return await asyncio.gather(*(d.wait() for d in deliveries))


async def test_no_loss_and_no_qos2_duplicates_across_faults(mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    root = unique("faults")
    consumer = Paho(mosquitto.plain_port, unique("consumer"), clean_start=False,
                    session_expiry=60).connect()
    consumer.subscribe(root + "/#", qos=2)
    rec = Recorder()
    # Clean start the first time, then resume the session (expiry 60 s) on every reconnect.
    c = client_via(proxy, rec, session_expiry_interval=60, max_inflight=20,
                   max_queued=5000, max_queued_bytes=1 << 20)
    await c.connect(proxy.url)
    n = 1500
    done = {1: 0, 2: 0}
    faults = [
        lambda: proxy.cut(),
        lambda: proxy.cut_after_bytes(40, UP),  # mid-PUBLISH, upstream
        lambda: proxy.reset(),
        lambda: proxy.cut_after_bytes(11, DOWN),  # mid-ack, downstream
        lambda: proxy.cut_after_bytes(1, UP),
        lambda: proxy.reset(),
    ]

    async def inject():
        for k, fault in enumerate(faults):
            await wait_until(lambda k=k: done[1] + done[2] >= (k + 1) * 2 * n // 8,
                             what=f"progress before fault {k}")
            fault()
            await rec.wait(Connected, k + 2, timeout=10)

    try:
        results = await asyncio.wait_for(asyncio.gather(
            _publish_all(c, root + "/q1", n, 1, done),
            _publish_all(c, root + "/q2", n, 2, done),
            inject()), 60)
        assert all(results[0])
        assert all(results[1])
        msgs = await consumer.wait_messages(2 * n, timeout=20)
        await asyncio.sleep(0.2)  # a late duplicate would show up now
        msgs = consumer.received()
    finally:
        consumer.disconnect()
    q1 = collections.Counter(m.payload for m in msgs if m.topic == root + "/q1")
    q2 = collections.Counter(m.payload for m in msgs if m.topic == root + "/q2")
    want = {b"%d" % i for i in range(n)}
    assert set(q1) == want, f"QoS 1 lost {sorted(want - set(q1))[:20]}"  # at least once
    assert set(q2) == want, f"QoS 2 lost {sorted(want - set(q2))[:20]}"
    dup2 = {k: v for k, v in q2.items() if v > 1}
    assert not dup2, f"QoS 2 duplicates: {dup2!r}"  # exactly once
    assert len(rec.of(Disconnected)) == len(faults)
    assert all(e.session_present for e in rec.of(Connected)[1:])
    await c.disconnect()


async def test_persistent_broker_restart_loses_nothing(mosquitto_persistent):
    broker = mosquitto_persistent
    root = unique("restart")
    consumer = Paho(broker.plain_port, unique("consumer"), clean_start=False,
                    session_expiry=300)
    consumer.c.reconnect_delay_set(0.05, 0.2)
    consumer.connect()
    consumer.subscribe(root + "/#", qos=2)
    rec = Recorder()
    # Clean Start 0 from the first connect: mosquitto 2.0 writes a session to its database
    # only if the connection that owns it had Clean Start 0 (expiry alone is not enough).
    c = MqttClient(ConnectOptions(unique("durable"), clean_start=False,
                                  session_expiry_interval=300,
                                  reconnect_config=ReconnectConfig(**FAST), max_queued=2000,
                                  max_queued_bytes=1 << 20))
    c.on_connection_event(rec)
    target = tapped(f"mqtt://{broker.host}:{broker.plain_port}")
    await c.connect(target)
    n = 400
    done = {1: 0, 2: 0}

    async def restart():
        await wait_until(lambda: done[1] + done[2] >= n // 2, what="half published")
        await asyncio.to_thread(broker.restart)
        await rec.wait(Connected, 2, timeout=10)

    try:
        results = await asyncio.wait_for(asyncio.gather(
            _publish_all(c, root + "/q1", n, 1, done),
            _publish_all(c, root + "/q2", n, 2, done),
            restart()), 30)
        assert all(results[0])
        assert all(results[1])
        msgs = await consumer.wait_for(
            lambda ms: len({(m.topic, m.payload) for m in ms}) >= 2 * n, 20, "every message")
    finally:
        consumer.disconnect()
    assert rec.of(Connected)[1].session_present  # the broker kept our session
    q1 = {m.payload for m in msgs if m.topic == root + "/q1"}
    q2 = {m.payload for m in msgs if m.topic == root + "/q2"}
    want = {b"%d" % i for i in range(n)}
    assert q1 == want
    assert q2 == want
    # Exactly once on our leg: every QoS 2 message went out as a new PUBLISH once; any resend
    # was a DUP with the same packet id. (The consumer itself may see a QoS 2 duplicate from
    # the broker after the restart: paho forgets its in-flight QoS 2 state on reconnect, so
    # the broker -> paho leg is not ours to judge.)
    firsts, resends = {}, []
    for tap in target.taps:
        for p in tap.sent_of(codec.PUBLISH):
            if p.qos == 2:
                if p.dup:
                    resends.append(p)
                else:
                    assert p.payload not in firsts, f"QoS 2 {p.payload!r} published twice"
                    firsts[p.payload] = p.packet_id
    assert all(firsts[p.payload] == p.packet_id for p in resends)
    await c.disconnect()


async def test_disconnect_during_backoff_stops_everything(mosquitto, fault_proxy):
    proxy = fault_proxy(mosquitto.host, mosquitto.plain_port)
    rec = Recorder()
    c = client_via(proxy, rec, reconnect_config=ReconnectConfig(
        initial_delay=0.05, max_delay=0.2, jitter=0))
    await c.connect(proxy.url)
    proxy.refuse(True)
    proxy.cut()
    await rec.wait(Reconnecting, 2)
    d = await c.begin_publish(unique("never"), b"x", qos=1)  # queued offline
    await asyncio.wait_for(c.disconnect(), 2)
    with pytest.raises(NetworkError):
        await asyncio.wait_for(d.wait(), 2)  # the waiter is told, not left hanging
    n, attempts = proxy.connections, len(rec.of(Reconnecting))
    proxy.refuse(False)
    await asyncio.sleep(0.5)
    assert (proxy.connections, len(rec.of(Reconnecting))) == (n, attempts)  # no retry
    assert not c.is_connected
    # ... and the client can be connected again.
    await c.connect(proxy.url)
    assert c.is_connected
    await c.disconnect()


async def test_session_takeover_ping_pong_backs_off(mosquitto):
    """Two clients with one client id take the session from each other; Mosquitto closes the
    loser without a DISCONNECT. Each reconnect must back off further instead of retrying at
    the initial delay forever."""
    cid = unique("twin-id")
    recs, clients = [], []
    for _ in range(2):
        rec = Recorder()
        c = MqttClient(ConnectOptions(cid, reconnect_config=ReconnectConfig(**FAST)))
        c.on_connection_event(rec)
        await c.connect(f"mqtt://{mosquitto.host}:{mosquitto.plain_port}")
        recs.append(rec)
        clients.append(c)
    await asyncio.sleep(1.5)
    for c in clients:
        await c.disconnect()
    connects = [len(r.of(Connected)) for r in recs]
    assert sum(connects) <= 12, connects  # at the initial 0.05 s it would be ~30
    for r in recs:  # the backoff grows from one short-lived connection to the next
        delays = [e.delay for e in r.of(Reconnecting)]
        assert delays == sorted(delays), delays
        assert delays[-1] >= 0.2, delays


async def test_no_heap_for_the_lost_link_fails_the_suback_waiter_not_hangs(mosquitto,
                                                                         monkeypatch):
    """The reader runs out of heap (a MemoryError in its poll) and there is none to load
    what handling a lost link needs (_cold): the task tries again every 500 ms, and
    meanwhile the SUBSCRIBE awaiting its SUBACK fails with the reader's error (the
    transport's NetworkError naming the MemoryError) instead of waiting for good behind a
    reader that died (the unix port hung there, heap full).
    Once _cold loads, the link is handled as lost: reconnected, subscribed again."""
    from mqtt_v5 import client as client_module

    rec = Recorder()
    c = MqttClient(ConnectOptions(unique("no-heap"), reconnect_config=ReconnectConfig(**FAST)))
    c.on_connection_event(rec)
    await c.connect(f"mqtt://{mosquitto.host}:{mosquitto.plain_port}")
    s = c._session
    poll = s.poll
    starved = [True]

    def starving_poll(now):
        if starved[0] and s.reader.end > s.reader.start:  # the SUBACK is in
            raise MemoryError("memory allocation failed (test)")
        return poll(now)

    def no_cold():
        raise MemoryError("memory allocation failed (test: _cold)")

    real_cold_paths = client_module._cold_paths
    monkeypatch.setattr(s, "poll", starving_poll)
    monkeypatch.setattr(client_module, "_cold_paths", no_cold)
    topic = unique("no-heap")
    got = []
    with pytest.raises(MemoryError) as caught:
        await asyncio.wait_for(c.subscribe(topic, lambda m: got.append(m.payload), qos=1), 5)
    # The waiter failed with the reader's error (as the transport names a failed read; and
    # subscribe's own clean-up, in _cold, found no heap either), not wait_for's cancellation
    # 5 s later.
    assert isinstance(caught.value.__context__, NetworkError)
    assert str(caught.value.__context__).endswith("failed: memory allocation failed (test)")
    assert not c.is_connected
    assert rec.kinds() == ["Connected"]  # no heap for the loss's events yet
    # The heap is back: the reader's next try hands the loss to _cold, which reconnects.
    starved[0] = False
    monkeypatch.setattr(client_module, "_cold_paths", real_cold_paths)
    await rec.wait(Connected, 2)
    assert rec.kinds() == ["Connected", "Disconnected", "Reconnecting", "Connected"]
    assert await c.subscribe(topic, lambda m: got.append(m.payload), qos=1) == 1
    assert await c.publish(topic, b"after", qos=1) > 0
    await wait_until(lambda: got, what="the message after the reconnect")
    assert got == [b"after"]
    await c.disconnect()
