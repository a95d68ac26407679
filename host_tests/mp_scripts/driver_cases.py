# MqttClient driver cases (issue 8), run the same on MicroPython's unix port and on CPython.
# Usage: driver_cases.py CASE URL [ARGS...]; prints one JSON object as its last line.
# Where the test must act on the network in the middle (stall or cut a proxy), the script
# prints "ready" and waits for a line on stdin before going on.
import asyncio
import json
import sys

from mqtt_v5 import ConnectOptions, MqttClient
from mqtt_v5._compat import sleep_ms, ticks_diff, ticks_ms
from mqtt_v5.client import Disconnected, ReconnectConfig

CASE = sys.argv[1]
URL = sys.argv[2]
ARGS = sys.argv[3:]


def step(what="ready"):
    """Let the test act (the event loop stands still meanwhile)."""
    print(what)
    try:
        sys.stdout.flush()
    except AttributeError:
        pass
    sys.stdin.readline()


async def within(aw, ms):
    """``aw``'s result, or "timeout" after ``ms``; an error's class name."""
    try:
        return await asyncio.wait_for(aw, ms / 1000)
    except asyncio.TimeoutError:  # (MicroPython has no builtin TimeoutError)
        return "timeout"
    except Exception as e:
        return type(e).__name__


def no_reconnect(**kw):
    return ConnectOptions(reconnect_config=ReconnectConfig(enabled=False), **kw)


async def dropped():
    """Item 1: publishes dropped unawaited or cancelled cost at most their own message."""
    out = {}
    c = MqttClient(no_reconnect(keep_alive=30))
    await c.connect(URL)
    got = []
    await c.subscribe("drv/dropped/#", lambda m: got.append(m.payload), qos=1)
    for i in range(20):
        c.publish("drv/dropped/a", b"q0-%d" % i, 0)  # dropped
        c.publish("drv/dropped/a", b"q1-%d" % i, 1)  # dropped
    out["after_dropped"] = await within(c.publish("drv/dropped/a", b"last", 1), 5000)
    # Cancelled while waiting for its PUBACK, and before it ever ran.
    t1 = asyncio.create_task(c.publish_qos1("drv/dropped/a", b"cancelled-waiting"))
    await sleep_ms(0)
    t1.cancel()
    t2 = asyncio.create_task(c.publish_qos1("drv/dropped/a", b"cancelled-early"))
    t2.cancel()
    out["after_cancelled"] = await within(c.publish("drv/dropped/a", b"last2", 1), 5000)
    for _ in range(100):
        if b"last2" in got:
            break
        await sleep_ms(20)
    out["got_last"] = b"last" in got and b"last2" in got
    # The next connection writes too.
    await c.disconnect()
    await c.connect(URL)
    out["next_connection"] = await within(c.publish("drv/dropped/a", b"again", 1), 5000)
    await c.disconnect()
    return out


async def dropped_held():
    """Item 1 with the write held (the link stalled: the kernel's buffers full): publishes
    dropped or cancelled then, and the link flowing again afterwards."""
    out = {}
    c = MqttClient(no_reconnect(keep_alive=60))
    await c.connect(URL)
    step()  # the test stalls the link for a while
    payload = b"x" * 4096
    t0 = ticks_ms()
    sent = 0
    # Fill the buffers until a publish has to wait for room.
    while ticks_diff(ticks_ms(), t0) < 4000:
        w = c.publish("drv/held/a", payload, 0)
        r = await within(w, 200)
        if r == "timeout":
            break
        sent += 1
    out["filled"] = sent > 0 and r == "timeout"  # a write is held now
    for i in range(10):
        c.publish("drv/held/a", b"dropped-%d" % i, 0)  # dropped
        c.publish("drv/held/a", b"dropped1-%d" % i, 1)  # dropped
    t = asyncio.create_task(c.publish_qos1("drv/held/a", b"cancelled"))
    await sleep_ms(10)
    t.cancel()
    # The stall ends by itself: then this goes through.
    out["after"] = await within(c.publish("drv/held/a", b"last", 1), 20000)
    await c.disconnect()
    return out


async def keepalive_stuck_writer():
    """Item 2: a write stuck on a dead link does not keep the client "connected": keep-alive
    finds the link dead within 1.5x keep-alive of the stall."""
    ka = int(ARGS[0])
    c = MqttClient(no_reconnect(keep_alive=ka))
    lost = []
    c.on_connection_event(lambda e: lost.append(ticks_ms()) if isinstance(e, Disconnected)
                          else None)
    await c.connect(URL)
    step()  # the test stalls the link (for good)
    t0 = ticks_ms()
    payload = b"y" * 4096

    async def writer():
        try:
            while True:
                await c.publish("drv/stuck/a", payload, 0)
        except Exception:
            pass

    task = asyncio.create_task(writer())
    while not lost and ticks_diff(ticks_ms(), t0) < ka * 4000:
        await sleep_ms(50)
    task.cancel()
    out = {"lost_after_ms": ticks_diff(lost[0], t0) if lost else None,
           "connected": c.is_connected}
    await c.disconnect()
    return out


async def silent_connect():
    """Item 3: connect() to a server that accepts TCP and says nothing (plain, or TLS when a
    CA is given) ends within connect_timeout."""
    opts = no_reconnect(connect_timeout=1)
    if ARGS:
        from mqtt_v5.tls import TlsConfig

        opts.tls = TlsConfig(ca=ARGS[0])
    c = MqttClient(opts)
    t0 = ticks_ms()
    try:
        await asyncio.wait_for(c.connect(URL), 10)
        r = "connected"
    except asyncio.TimeoutError:  # (MicroPython has no builtin TimeoutError)
        r = "hung"
    except Exception as e:
        r = type(e).__name__ + ": " + str(e)
    return {"result": r, "ms": ticks_diff(ticks_ms(), t0)}


async def reconnect_silent():
    """Item 3: the reconnect loop goes on past a server that accepts and says nothing."""
    c = MqttClient(ConnectOptions(keep_alive=30, connect_timeout=1, reconnect_config=(
        ReconnectConfig(initial_delay=0.05, max_delay=0.1, jitter=0))))
    attempts = []
    c.on_connection_event(lambda e: attempts.append(e.attempt) if hasattr(e, "attempt")
                          else None)
    await c.connect(URL)
    step()  # the test stalls the proxy and cuts the connection
    t0 = ticks_ms()
    while len(attempts) < 3 and ticks_diff(ticks_ms(), t0) < 8000:
        await sleep_ms(50)
    out = {"attempts": attempts, "ms": ticks_diff(ticks_ms(), t0)}
    await within(c.disconnect(), 3000)
    return out


async def gave_up():
    """Item 4: once reconnecting gave up, publish raises at once and queued messages fail."""
    mode = ARGS[0]  # "attempts" or "disabled"
    if mode == "disabled":
        rc = ReconnectConfig(enabled=False)
    else:
        rc = ReconnectConfig(initial_delay=0.05, max_delay=0.1, jitter=0, max_attempts=2)
    c = MqttClient(ConnectOptions(keep_alive=30, connect_timeout=1, reconnect_config=rc))
    c.messages()
    events = []
    c.on_connection_event(lambda e: events.append(type(e).__name__))
    await c.connect(URL)
    step()  # the test refuses new connections and cuts this one
    t0 = ticks_ms()
    while "Disconnected" not in events and ticks_diff(ticks_ms(), t0) < 5000:
        await sleep_ms(10)
    queued0 = asyncio.create_task(within(c.publish("drv/gone/a", b"queued0", 0), 8000))
    queued1 = asyncio.create_task(within(c.publish("drv/gone/a", b"queued1", 1), 8000))
    # Wait until reconnecting gives up (the supervisor is gone).
    while c._supervisor is not None and ticks_diff(ticks_ms(), t0) < 8000:
        await sleep_ms(20)
    out = {"queued1": await queued1}
    await queued0  # QoS 0 queued: failed or dropped, but never waits forever
    t1 = ticks_ms()
    out["qos0"] = await within(c.publish("drv/gone/a", b"late0", 0), 3000)
    out["qos1"] = await within(c.publish("drv/gone/a", b"late1", 1), 3000)
    out["ms"] = ticks_diff(ticks_ms(), t1)
    try:  # the messages() iterator ends: nothing will come any more
        await asyncio.wait_for(c.__anext__(), 1)
        out["iterator"] = "message"
    except StopAsyncIteration:
        out["iterator"] = "ended"
    except asyncio.TimeoutError:  # (MicroPython has no builtin TimeoutError)
        out["iterator"] = "hung"
    return out


async def callbacks_bounded():
    """Item 5: coroutine callbacks are bounded by receive_maximum (QoS 1: acknowledged when
    the callback ends, so the server's window holds the rest; QoS 0: the reader waits)."""
    qos = int(ARGS[0])
    n = 40
    c = MqttClient(no_reconnect(keep_alive=30, receive_maximum=4))
    await c.connect(URL)
    running = [0, 0]  # now, most at once
    got = []

    async def slow(m):
        running[0] += 1
        if running[0] > running[1]:
            running[1] = running[0]
        await sleep_ms(30)
        got.append(m.payload)
        running[0] -= 1

    topic = f"drv/cb/{qos}/{ticks_ms()}"
    await c.subscribe(topic, slow, qos=qos)
    feeder = MqttClient(no_reconnect(keep_alive=30, max_inflight=64))
    await feeder.connect(URL)
    for i in range(n):
        if qos:
            await feeder.begin_publish(topic, b"%d" % i, qos)  # the ack is not waited for
        else:
            await feeder.publish(topic, b"%d" % i, qos)
    t0 = ticks_ms()
    while len(got) < n and ticks_diff(ticks_ms(), t0) < 10000:
        await sleep_ms(20)
    out = {"most_at_once": running[1], "received": len(got),
           "in_order": got == [b"%d" % i for i in range(n)]}
    await feeder.disconnect()
    await c.disconnect()
    return out


async def sid_collision():
    """Item 9: a Subscription Identifier the user gives is not handed out again by the
    automatic counter, so each message reaches its own filter's callback only."""
    from mqtt_v5 import properties as P

    c = MqttClient(no_reconnect(keep_alive=30))
    await c.connect(URL)
    got = {"a": [], "b": []}
    base = f"drv/sid/{ticks_ms()}"
    await c.subscribe(base + "/b/#", lambda m: got["b"].append(m.topic), qos=1,
                      properties={P.PROP_SUBSCRIPTION_IDENTIFIER: 2})
    # Overlapping filters: the dispatcher matches identifiers, so with a collision each
    # callback would get /b/x twice.
    await c.subscribe(base + "/#", lambda m: got["a"].append(m.topic), qos=1)
    await c.publish(base + "/a/x", b"1", 1)
    await c.publish(base + "/b/x", b"2", 1)
    t0 = ticks_ms()
    while (len(got["a"]) < 2 or not got["b"]) and ticks_diff(ticks_ms(), t0) < 3000:
        await sleep_ms(20)
    await sleep_ms(100)
    await c.disconnect()
    return {"a": [t[len(base):] for t in got["a"]], "b": [t[len(base):] for t in got["b"]]}


async def auth():
    """Item 6: enhanced authentication at connect and again later (the server is scripted
    by the test: two challenges at connect, one at re-authentication)."""
    c = MqttClient(ConnectOptions("authed", auth_method="X-CHALLENGE", auth_data=b"hello",
                                  on_auth=lambda data: b"answer:" + data, connect_timeout=5,
                                  reconnect_config=ReconnectConfig(enabled=False)))
    out = {}
    try:
        await c.connect(URL)
        out["connected"] = c.is_connected
        await asyncio.wait_for(c.reauthenticate(b"again"), 5)
        out["reauthenticated"] = c.is_connected
    except Exception as e:
        out["error"] = type(e).__name__ + ": " + str(e)
    await within(c.disconnect(), 3000)
    return out


async def redirect():
    """Item 7: CONNACK 0x9D with a Server Reference, followed when asked."""
    c = MqttClient(ConnectOptions(connect_timeout=5, follow_redirects=True,
                                  reconnect_config=ReconnectConfig(enabled=False)))
    out = {}
    try:
        ev = await c.connect(URL)
        out["reason_string"] = ev.reason_string
        out["granted"] = await c.subscribe("drv/redirect/x", qos=1)
    except Exception as e:
        out["error"] = type(e).__name__ + ": " + str(e)
    await within(c.disconnect(), 3000)
    return out


async def refused_for_good():
    """Item 11: a reconnect refused with a code retrying cannot fix stops reconnecting."""
    c = MqttClient(ConnectOptions(connect_timeout=5, reconnect_config=ReconnectConfig(
        initial_delay=0.05, max_delay=0.1, jitter=0)))
    events = []
    c.on_connection_event(lambda e: events.append(
        [type(e).__name__, getattr(e, "reason_code", None)]))
    await c.connect(URL)
    t0 = ticks_ms()
    while len([e for e in events if e[0] == "Disconnected"]) < 2 and \
            ticks_diff(ticks_ms(), t0) < 5000:
        await sleep_ms(20)
    await sleep_ms(300)  # past the next backoff delay
    return {"events": events, "publish": await within(c.publish("t", b"x", 1), 1000)}


CASES = {
    "auth": auth,
    "redirect": redirect,
    "refused_for_good": refused_for_good,
    "sid_collision": sid_collision,
    "callbacks_bounded": callbacks_bounded,
    "dropped": dropped,
    "dropped_held": dropped_held,
    "keepalive_stuck_writer": keepalive_stuck_writer,
    "silent_connect": silent_connect,
    "reconnect_silent": reconnect_silent,
    "gave_up": gave_up,
}

print(json.dumps(asyncio.run(CASES[CASE]())))
