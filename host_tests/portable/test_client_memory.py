"""MqttClient end to end over the in-memory transport, under pytest AND real MicroPython.

The peer is ``_mqtt_server.ScriptedServer``: a few lines of server written with our codec,
in the same event loop, reached through ``memory_pipe()``. The client connects with the
server's factory (``client.connect(srv.connect)``) so reconnects open a new pipe.
"""

import asyncio

from _mqtt_server import ScriptedServer

from mqtt_v5 import _server_codec as C
from mqtt_v5 import properties as P
from mqtt_v5.client import Connected, ConnectOptions, Disconnected, MqttClient, ReconnectConfig
from mqtt_v5.errors import ProtocolError, UsageError

FAST_RECONNECT = ReconnectConfig(initial_delay=0.01, max_delay=0.01, jitter=0)


async def _started(srv, **kw):
    kw.setdefault("reconnect_config", FAST_RECONNECT)
    c = MqttClient(ConnectOptions("dev1", **kw))
    events = []
    c.on_connection_event(events.append)
    await c.connect(srv.connect)
    return c, events


async def _stop(c, srv):
    await c.disconnect()
    await srv.stop()


async def _until(cond, timeout_s=5):
    async def loop():
        while not cond():
            await asyncio.sleep(0.002)

    await asyncio.wait_for(loop(), timeout_s)


async def test_connect_adopts_the_connack_limits():
    srv = ScriptedServer(connack_props={
        P.PROP_RECEIVE_MAXIMUM: 5, P.PROP_MAXIMUM_QOS: 1, P.PROP_TOPIC_ALIAS_MAXIMUM: 3,
        P.PROP_SERVER_KEEP_ALIVE: 30, P.PROP_MAXIMUM_PACKET_SIZE: 200,
        P.PROP_ASSIGNED_CLIENT_IDENTIFIER: "given-id", P.PROP_RETAIN_AVAILABLE: 0})
    c, events = await _started(srv, keep_alive=45)
    try:
        assert c.is_connected
        lim = c.limits
        assert (lim.receive_maximum, lim.maximum_qos, lim.topic_alias_maximum,
                lim.server_keep_alive, lim.maximum_packet_size, lim.retain_available) == \
            (5, 1, 3, 30, 200, False)
        assert c.client_id == "given-id"
        assert c._session.keep_alive_ms == 30000  # the server's keep alive wins
        conn = srv.connects[0]
        assert conn.client_id == "dev1" and conn.keep_alive == 45 and conn.clean_start
        assert conn.properties[P.PROP_RECEIVE_MAXIMUM] == 8  # the defaults
        assert conn.properties[P.PROP_MAXIMUM_PACKET_SIZE] == 2048
        assert len(events) == 1 and isinstance(events[0], Connected)
        # What the limits forbid is refused before anything is sent.
        for kw, rc in (({"qos": 2}, 0x9B), ({"retain": True}, 0x9A)):
            try:
                await c.publish("t", b"x", **kw)
                raise AssertionError("publish %r was accepted" % (kw,))
            except UsageError as e:
                assert e.reason_code == rc, e
        try:
            await c.publish("t", b"x" * 300)
            raise AssertionError("a PUBLISH over the Maximum Packet Size was accepted")
        except UsageError as e:
            assert e.reason_code == 0x95, e
        assert not srv.of_type(C.PUBLISH)
    finally:
        await _stop(c, srv)


async def test_subscriptions_route_to_plain_and_coroutine_callbacks():
    srv = ScriptedServer()
    c, _ = await _started(srv)
    plain, coro, other = [], [], []

    async def on_b(m):
        await asyncio.sleep(0)  # a coroutine callback may await: it got a detached copy
        coro.append((m.topic, m.payload, m.qos))

    try:
        assert await c.subscribe("a/+", lambda m: plain.append((m.topic, m.payload)), qos=1) == 1
        assert await c.subscribe("b/#", on_b) == 0
        c.on_message(lambda m: other.append(m.topic))
        subs = srv.of_type(C.SUBSCRIBE)
        assert [s.subscriptions for s in subs] == [[("a/+", 1)], [("b/#", 0)]]
        await srv.send(C.Publish("a/x", b"1"))
        await srv.send(C.Publish("b/y/z", b"2", qos=1, packet_id=7))
        await srv.send(C.Publish("c", b"3"))
        await srv.send(C.Publish("a/x/deeper", b"4"))
        await _until(lambda: len(plain) == 1 and len(coro) == 1 and len(other) == 2)
        assert plain == [("a/x", b"1")]
        assert coro == [("b/y/z", b"2", 1)]
        assert other == ["c", "a/x/deeper"]
        await srv.wait_for(lambda: srv.of_type(C.PUBACK))
        assert srv.of_type(C.PUBACK)[0].packet_id == 7
    finally:
        await _stop(c, srv)


async def test_publish_qos_0_1_2_to_the_server():
    srv = ScriptedServer()
    c, _ = await _started(srv)
    try:
        assert await c.publish("t/0", b"zero") == 0
        pid1 = await c.publish("t/1", "one", qos=1)  # str payloads are UTF-8 encoded
        pid2 = await c.publish("t/2", b"two", qos=2)  # returns after PUBCOMP
        assert pid1 and pid2 and pid1 != pid2
        pubs = srv.of_type(C.PUBLISH)
        assert [(p.topic, p.payload, p.qos, p.packet_id) for p in pubs] == [
            ("t/0", b"zero", 0, 0), ("t/1", b"one", 1, pid1), ("t/2", b"two", 2, pid2)]
        assert [p.packet_id for p in srv.of_type(C.PUBREL)] == [pid2]
        assert c._session.inflight() == 0
    finally:
        await _stop(c, srv)


async def test_receive_qos1_acknowledged_and_qos2_exactly_once():
    srv = ScriptedServer()
    c, _ = await _started(srv)
    got = []
    try:
        await c.subscribe("r/#", lambda m: got.append((m.topic, m.payload, m.qos, m.dup)), qos=2)
        await srv.send(C.Publish("r/1", b"a", qos=1, packet_id=11))
        await srv.wait_for(lambda: srv.of_type(C.PUBACK))
        assert srv.of_type(C.PUBACK)[0].packet_id == 11
        srv.auto_ack = False  # this test plays the QoS 2 exchange by hand
        await srv.send(C.Publish("r/2", b"b", qos=2, packet_id=12))
        await srv.wait_for(lambda: len(srv.of_type(C.PUBREC)) == 1)
        # The server did not see the PUBREC (say) and sends again: acknowledged, not
        # delivered a second time.
        await srv.send(C.Publish("r/2", b"b", qos=2, packet_id=12, dup=True))
        await srv.wait_for(lambda: len(srv.of_type(C.PUBREC)) == 2)
        await srv.send(C.Ack(C.PUBREL, 12))
        await srv.wait_for(lambda: srv.of_type(C.PUBCOMP))
        assert [p.packet_id for p in srv.of_type(C.PUBREC)] == [12, 12]
        assert srv.of_type(C.PUBCOMP)[0].packet_id == 12
        # After PUBCOMP the id is free: the same id is a new message.
        await srv.send(C.Publish("r/3", b"c", qos=2, packet_id=12))
        await srv.wait_for(lambda: len(srv.of_type(C.PUBREC)) == 3)
        assert got == [("r/1", b"a", 1, False), ("r/2", b"b", 2, False), ("r/3", b"c", 2, False)]
    finally:
        await _stop(c, srv)


async def test_begin_publish_pipelines_up_to_the_receive_maximum():
    srv = ScriptedServer(connack_props={P.PROP_RECEIVE_MAXIMUM: 3})
    srv.auto_ack = False
    c, _ = await _started(srv)
    deliveries = []

    async def publish_all():
        for i in range(5):
            deliveries.append(await c.begin_publish("p", bytes([i]), qos=1))

    try:
        task = asyncio.create_task(publish_all())
        await srv.wait_for(lambda: len(srv.of_type(C.PUBLISH)) == 3)
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(srv.of_type(C.PUBLISH)) == 3  # the window is full: the 4th waits
        assert len(deliveries) == 3 and not deliveries[0].done()
        first = srv.of_type(C.PUBLISH)[0].packet_id
        await srv.send(C.Ack(C.PUBACK, first))
        await srv.wait_for(lambda: len(srv.of_type(C.PUBLISH)) == 4)
        assert await deliveries[0].wait() == first
        for p in srv.of_type(C.PUBLISH)[1:]:
            await srv.send(C.Ack(C.PUBACK, p.packet_id))
        await srv.wait_for(lambda: len(srv.of_type(C.PUBLISH)) == 5)
        await srv.send(C.Ack(C.PUBACK, srv.of_type(C.PUBLISH)[4].packet_id))
        await asyncio.wait_for(task, 5)
        pids = []
        for d in deliveries:  # (MicroPython has no await in comprehensions)
            pids.append(await d.wait())
        assert pids == [p.packet_id for p in srv.of_type(C.PUBLISH)]
        assert [p.payload for p in srv.of_type(C.PUBLISH)] == [bytes([i]) for i in range(5)]
    finally:
        await _stop(c, srv)


async def test_disconnect_fails_what_waits_with_one_network_error():
    # disconnect() makes its error only for a waiter it fails (none in the everyday case),
    # then one error for all of them.
    from mqtt_v5 import NetworkError

    srv = ScriptedServer()
    srv.auto_ack = False
    c, _ = await _started(srv)
    deliveries = []
    for _ in range(2):  # (no await in a comprehension: MicroPython has none)
        deliveries.append(await c.begin_publish("p", b"x", qos=1))
    await srv.wait_for(lambda: len(srv.of_type(C.PUBLISH)) == 2)
    await _stop(c, srv)
    errors = []
    for d in deliveries:
        try:
            await d.wait()
        except NetworkError as e:
            errors.append(e)
    assert len(errors) == 2 and errors[0] is errors[1]
    assert (str(errors[0]), errors[0].reason_code) == ("client disconnected", None)


async def test_keep_alive_sends_pingreq_when_idle():
    srv = ScriptedServer()
    c, _ = await _started(srv, keep_alive=1)
    try:
        await srv.wait_for(lambda: srv.pings >= 1, 3)
        assert c.is_connected  # PINGRESP came back: the link stays up
    finally:
        await _stop(c, srv)


async def test_server_disconnect_reconnects_resubscribes_and_flushes_the_queue():
    srv = ScriptedServer()
    queued = []

    async def on_event(ev):
        # Runs in the supervisor before it reconnects: the client is offline here.
        if isinstance(ev, Disconnected) and not queued:
            await c.publish("q/0", b"offline qos0")
            queued.append(await c.begin_publish("q/1", b"offline qos1", qos=1))

    c, events = await _started(srv)
    c.on_connection_event(on_event)
    got = []
    try:
        await c.subscribe("q/#", lambda m: got.append(m.payload))
        await srv.send(C.Disconnect(0x8B, {P.PROP_REASON_STRING: "maintenance"}))
        # Connected, Disconnected, (Reconnecting,) Connected
        await _until(lambda: len(events) >= 3 and isinstance(events[-1], Connected))
        events = [e for e in events if isinstance(e, (Connected, Disconnected))]
        ev = events[1]
        assert isinstance(ev, Disconnected), events
        assert ev.by_server and ev.reason_code == 0x8B and ev.reason_string == "maintenance"
        assert isinstance(events[2], Connected) and not events[2].session_present
        assert srv.connections == 2
        # The new session is empty: the client subscribed again by itself, then sent
        # what was queued while offline, in order.
        subs = srv.of_type(C.SUBSCRIBE)
        assert [s.subscriptions for s in subs] == [[("q/#", 0)], [("q/#", 0)]]
        assert await queued[0].wait() > 0
        pubs = srv.of_type(C.PUBLISH)
        assert [(p.topic, p.qos) for p in pubs] == [("q/0", 0), ("q/1", 1)]
        # The echo of both proves the re-subscription is live.
        await _until(lambda: len(got) == 2)
        assert got == [b"offline qos0", b"offline qos1"]
    finally:
        await _stop(c, srv)


async def test_resumed_session_is_not_resubscribed_and_unacked_qos1_is_resent():
    srv = ScriptedServer()
    c, events = await _started(srv, clean_start=False, session_expiry_interval=60)
    try:
        await c.subscribe("s/#")
        srv.auto_ack = False
        d = await c.begin_publish("s/1", b"once", qos=1)
        await srv.wait_for(lambda: srv.of_type(C.PUBLISH))
        srv.auto_ack = True
        srv.session_present = True
        await srv.hang_up()  # the PUBACK never came
        assert await d.wait() == srv.of_type(C.PUBLISH)[0].packet_id
        assert isinstance(events[-1], Connected) and events[-1].session_present
        assert not srv.connects[1].clean_start
        assert len(srv.of_type(C.SUBSCRIBE)) == 1  # the server kept the subscription
        first, again = srv.of_type(C.PUBLISH)
        assert again.dup and again.packet_id == first.packet_id and again.payload == b"once"
    finally:
        await _stop(c, srv)


async def test_protocol_violations_disconnect_with_the_reason_code():
    srv = ScriptedServer()
    srv.echo = False
    c, events = await _started(srv)
    cases = (
        (C.encode_bytes(C.Ack(C.PUBACK, 77)), 0x82),  # PUBACK for nothing sent
        (b"\x36\x05\x00\x01t\x00\x01", 0x81),  # PUBLISH QoS 3
        (C.encode_bytes(C.Publish("t", b"", properties={P.PROP_TOPIC_ALIAS: 9})), 0x94),
    )
    try:
        for i, (data, rc) in enumerate(cases):
            await _until(lambda: c.is_connected)
            await srv.send_raw(data)
            await _until(lambda n=i: len([e for e in events if isinstance(e, Disconnected)]) > n)
            ev = [e for e in events if isinstance(e, Disconnected)][i]
            assert isinstance(ev.error, ProtocolError), ev
            assert ev.error.reason_code == rc and ev.reason_code == rc, (ev, rc)
            assert not ev.by_server
            await srv.wait_for(lambda n=i: len(srv.of_type(C.DISCONNECT)) > n)
            assert srv.of_type(C.DISCONNECT)[i].reason_code == rc
        await _until(lambda: c.is_connected)  # and it came back each time
        assert srv.connections == len(cases) + 1
    finally:
        await _stop(c, srv)


async def test_qos0_publish_allocates_nothing_under_micropython():
    import sys

    if sys.implementation.name != "micropython":
        return
    import gc

    import micropython

    srv = ScriptedServer()
    c, _ = await _started(srv)
    try:
        for _ in range(5):  # warm: the topic's bytes and the packet's view are cached
            await c.publish(b"m/0", b"payload")
            await asyncio.sleep_ms(2)
        # Nobody reads the server end now: in this port, waking a task (the server's
        # reader) allocates in the JavaScript-driven scheduler, which a device's does not.
        srv.task.cancel()
        await asyncio.sleep_ms(2)
        before = srv.conn._n
        gc.collect()
        micropython.heap_lock()
        try:
            pid = await c.publish(b"m/0", b"payload")
            locked_ok = True
        except MemoryError:
            locked_ok = False
        finally:
            micropython.heap_unlock()
        assert locked_ok, "publish allocated under heap_lock"
        assert pid == 0
        assert srv.conn._n > before  # and the PUBLISH is in the server's ring
    finally:
        await _stop(c, srv)


class _LockedReads:
    """Under MicroPython, lock the heap for the stretch of the client's reader task
    that handles what one read brought: from the pipe handing the bytes over (its
    ``_take``, in the reader's task) to the client's next ``readinto`` (made once
    nothing is left to handle). Everything the driver and the session do for a
    received packet -- parse, dispatch, the callback, the acknowledgement written
    back -- runs inside; only asyncio's wake-ups that start and end the stretch are
    outside (this port's scheduler allocates to queue a task; a device's does not)."""

    def __init__(self, c):
        import micropython

        self.armed = False
        self.locked = False
        self.stretches = 0
        self.error = None
        from mqtt_v5 import client as client_module

        end = c._transport
        take = end._take
        readinto = end.readinto
        # The reader's error handler calls _cold.link_failed (_cold loaded now: not
        # under the lock). Wrapped for this client; others pass through.
        cold = client_module._cold_paths()
        link_failed = cold.link_failed

        def locked_take(buf):
            n = take(buf)
            if n > 0 and self.armed:
                micropython.heap_lock()
                self.locked = True
            return n

        def unlocking_readinto(buf):
            if self.locked:
                micropython.heap_unlock()
                self.locked = False
                self.stretches += 1
            return readinto(buf)

        def unlocking_link_failed(client, e):
            # The reader's error handler: a MemoryError under the lock ends up here
            # (anything else done with the heap locked would fail again).
            if client is c:
                if self.locked:
                    micropython.heap_unlock()
                    self.locked = False
                self.error = e
            link_failed(client, e)

        end._take = locked_take
        end.readinto = unlocking_readinto
        cold.link_failed = unlocking_link_failed

    async def stretch(self, c):
        """Let the reader run one locked stretch; True if it completed without error."""
        import micropython

        done = self.stretches + 1
        self.armed = True
        try:
            for _ in range(100):
                if self.stretches >= done or self.error is not None:
                    break
                await asyncio.sleep_ms(0)
        finally:
            self.armed = False
            if self.locked:
                micropython.heap_unlock()
                self.locked = False
        return self.stretches >= done and self.error is None


def _locked(fn):
    """``fn()`` under ``micropython.heap_lock()``: (True, result) or (False, None)."""
    import micropython

    micropython.heap_lock()
    try:
        r = fn()
        ok = True
    except MemoryError:
        r = None
        ok = False
    finally:
        micropython.heap_unlock()
    return ok, r  # (the tuple made once unlocked)


async def test_qos1_publish_allocates_nothing_in_the_client_under_micropython():
    """Stop-and-wait QoS 1 publish: the publisher's part (encode, write, the awaited
    outcome) and the reader's (the PUBACK) both run under heap_lock."""
    import sys

    if sys.implementation.name != "micropython":
        return
    import gc

    import micropython

    srv = ScriptedServer()
    srv.record = False
    c, _ = await _started(srv)
    try:
        for _ in range(5):  # warm: the Delivery and its awaitable, the views, the topic
            assert await c.publish(b"m/1", b"payload", 1) > 0
        srv.task.cancel()  # the server answers inside this task now (serve_now)
        await asyncio.sleep_ms(2)
        reads = _LockedReads(c)
        last = 0

        def publish():
            return c.publish(b"m/1", b"payload", 1)

        for _ in range(4):
            gc.collect()
            ok, w = _locked(publish)
            assert ok, "publish(qos=1) allocated under heap_lock"
            srv.serve_now()  # the PUBACK into the client's ring (wakes its reader)
            assert await reads.stretch(c), "the reader allocated handling the PUBACK (%r)" % (
                reads.error,)
            micropython.heap_lock()
            try:
                pid = await w  # the outcome: acknowledged already, nothing to wait for
                ok = True
            except MemoryError:
                ok = False
            finally:
                micropython.heap_unlock()
            assert ok, "awaiting publish(qos=1) allocated under heap_lock"
            assert pid > 0 and pid != last
            last = pid
        assert c.is_connected and c._session.inflight() == 0
    finally:
        await _stop(c, srv)


async def test_receiving_allocates_nothing_in_the_client_under_micropython():
    """A received QoS 0 and QoS 1 message (a plain callback; for QoS 1 the PUBACK
    written back): the reader's whole stretch under heap_lock."""
    import sys

    if sys.implementation.name != "micropython":
        return
    import gc

    srv = ScriptedServer()
    srv.record = False
    c, _ = await _started(srv)
    got = [0]

    def on_message(m):
        if m.topic_is(b"in/room1/temp"):
            got[0] += 1

    try:
        await c.subscribe("in/#", on_message, qos=1)
        srv.task.cancel()
        await asyncio.sleep_ms(2)
        reads = _LockedReads(c)
        end = srv.conn
        for qos, pkt in ((0, C.encode_bytes(C.Publish("in/room1/temp", b"21.5"))),
                         (1, C.encode_bytes(C.Publish("in/room1/temp", b"21.5", qos=1,
                                                      packet_id=7)))):
            for i in range(6):
                handled = srv.handled
                want = got[0] + 1
                end._off = 0
                end._put(pkt)  # the server sends (wakes the client's reader)
                if i >= 2:  # warm first
                    gc.collect()
                    assert await reads.stretch(c), "QoS %d receive allocated (%r)" % (
                        qos, reads.error)
                else:
                    while got[0] < want:
                        await asyncio.sleep_ms(0)
                assert got[0] == want
                srv.serve_now()  # reads what the client sent back
                assert srv.handled == handled + qos  # its PUBACK, for QoS 1
        assert c.is_connected
    finally:
        await _stop(c, srv)
