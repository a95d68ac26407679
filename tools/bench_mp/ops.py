# Garbage per operation and rates, under MicroPython's unix port against Mosquitto on loopback
# (plain TCP: TLS would add mbedTLS's own per-record costs to every library alike).
#   micropython ops.py LIB PORT        LIB: ours | umqtt | mqtt_as
# Prints one JSON object. Garbage: gc disabled, gc.mem_alloc() delta over N operations / N.
# Rates: the best of ROUNDS back-to-back runs, for every library alike (one run of 5,000
# QoS 0 publishes lasts ~40 ms: on a shared machine single runs swung by a third).
# "wakeup": asyncio's own garbage for one socket wake-up (await Stream.readinto on a
# preallocated buffer), measured in this process: the floor of anything that waits on a socket.
import gc
import json
import socket
import sys
import time

LIB = sys.argv[1]
PORT = int(sys.argv[2])
HOST = "127.0.0.1"
TOPIC = "bench/ops"
TOPIC_B = b"bench/ops"
PAYLOAD = bytes(64)
N = 500
ROUNDS = 3
out = {}


def vbi(n):
    b = bytearray()
    while True:
        d = n & 0x7F
        n >>= 7
        b.append(d | 0x80 if n else d)
        if not n:
            return bytes(b)


def s16(b):
    return bytes((len(b) >> 8, len(b) & 255)) + b


def packet(first, body):
    return bytes((first,)) + vbi(len(body)) + body


def publish_v5(topic, payload, qos, pid=0, props=b""):
    body = s16(topic) + (bytes((pid >> 8, pid & 255)) if qos else b"") + vbi(len(props)) + props
    return packet(0x30 | (qos << 1), body + payload)


USER_PROPS = b"\x26" + s16(b"k") + s16(b"v") + b"\x26" + s16(b"unit") + s16(b"celsius")


class Raw:
    """A second connection (blocking socket, MQTT 5, prebuilt packets): publishes to the
    client under test without allocating in this process."""

    def __init__(self, cid=b"raw"):
        self.s = socket.socket()
        self.s.connect(socket.getaddrinfo(HOST, PORT)[0][-1])
        body = s16(b"MQTT") + b"\x05\x02\x00\x3c\x00" + s16(cid)
        self.s.write(packet(0x10, body))
        self.ack = bytearray(4)
        self.s.readinto(self.ack)  # CONNACK v5: 20 03 00 00 00
        self.s.readinto(bytearray(1))

    def send(self, pkt, qos1=False):
        self.s.write(pkt)
        if qos1:  # PUBACK v5 with reason 0 may be 4 bytes (20 02 id id) -> 40 02 id id
            self.s.readinto(self.ack)


def mem():
    return gc.mem_alloc()


def start():
    gc.collect()
    gc.disable()
    return gc.mem_alloc()


def stop(a, n):
    b = gc.mem_alloc()
    gc.enable()
    return round((b - a) / n)


def rate(n, t0):
    dt = time.ticks_diff(time.ticks_us(), t0)
    return round(n * 1000000 / dt) if dt > 0 else 0


def best(key, r):
    out[key] = max(out.get(key, 0), r)


async def wakeup_cost():
    """asyncio's own garbage for one socket wake-up: PINGREQ written on a raw MQTT
    connection, PINGRESP awaited through asyncio's Stream."""
    import asyncio

    raw = Raw(b"wake")
    raw.s.setblocking(False)
    st = asyncio.StreamReader(raw.s)
    buf = bytearray(2)
    ping = b"\xc0\x00"
    for _ in range(3):
        raw.s.write(ping)
        await st.readinto(buf)
    a = start()
    for _ in range(N):
        raw.s.write(ping)
        await st.readinto(buf)
    r = stop(a, N)
    raw.s.close()
    return r


async def wakeup_task_cost():
    """The receive measurement's floor: the same loop (the main task spinning on
    sleep_ms(0) until a counter moves) with the counter moved by a plain task that awaits
    Stream.readinto on a raw connection: asyncio's and this harness's garbage per message."""
    import asyncio

    raw = Raw(b"wake2")
    raw.s.setblocking(False)
    st = asyncio.StreamReader(raw.s)
    buf = bytearray(2)
    n = [0]

    async def reader():
        while True:
            await st.readinto(buf)
            n[0] += 1

    task = asyncio.create_task(reader())
    ping = b"\xc0\x00"

    async def one():
        want = n[0] + 1
        raw.s.write(ping)
        while n[0] < want:
            await asyncio.sleep_ms(0)

    for _ in range(3):
        await one()
    a = start()
    for _ in range(N):
        want = n[0] + 1
        raw.s.write(ping)
        while n[0] < want:
            await asyncio.sleep_ms(0)
    r = stop(a, N)
    task.cancel()
    raw.s.close()
    return r


async def ours():
    import asyncio

    from mqtt_v5 import ConnectOptions, MqttClient, PublishOptions

    c = MqttClient(ConnectOptions("ops-ours", keep_alive=60, max_inflight=20))
    await c.connect("mqtt://%s:%d" % (HOST, PORT))
    got = [0]

    def on(msg):
        got[0] += 1

    await c.subscribe("bench/in/#", on, qos=1)
    out["wakeup"] = await wakeup_cost()
    out["wakeup in a task"] = await wakeup_task_cost()
    opts = PublishOptions(user_properties=[("k", "v"), ("unit", "celsius")])
    # -- garbage per publish
    for q in (0, 1):
        for name, topic, o in (("", TOPIC, None), ("bytes topic ", TOPIC_B, None),
                               ("user props ", TOPIC, opts)):
            for _ in range(3):
                await c.publish(topic, PAYLOAD, qos=q, options=o)
            a = start()
            for _ in range(N):
                await c.publish(topic, PAYLOAD, qos=q, options=o)
            out["%spublish qos%d" % (name, q)] = stop(a, N)
    # -- what _compat's StopIteration rewrite (uctypes) saves: the same QoS 1 publishes with
    # each awaited value carried by a StopIteration of its own
    from mqtt_v5 import _compat

    saved = _compat._stop
    if saved is not None:
        _compat._stop = None
        for _ in range(3):
            await c.publish(TOPIC, PAYLOAD, qos=1)
        a = start()
        for _ in range(N):
            await c.publish(TOPIC, PAYLOAD, qos=1)
        out["publish qos1 without rewrite"] = stop(a, N)
        _compat._stop = saved
    # -- garbage per received message (another connection publishes; one message per wake-up)
    raw = Raw()
    for q in (0, 1):
        for name, props in (("", b""), ("user props ", USER_PROPS)):
            pkt = publish_v5(b"bench/in/x", PAYLOAD, q, 7, props)
            for _ in range(3):
                want = got[0] + 1
                raw.send(pkt, q)
                while got[0] < want:
                    await asyncio.sleep_ms(0)
            a = start()
            for _ in range(N):
                want = got[0] + 1
                raw.send(pkt, q)
                while got[0] < want:
                    await asyncio.sleep_ms(0)
            out["%sreceive qos%d" % (name, q)] = stop(a, N)
    raw.s.close()
    # -- idle: 3 s connected, nothing sent (less the harness's own sleep, measured first)
    a = start()
    await asyncio.sleep_ms(0)
    base = gc.mem_alloc() - a
    gc.enable()
    a = start()
    await asyncio.sleep(3)
    out["idle B/s"] = max(0, round((gc.mem_alloc() - a - base) / 3))
    gc.enable()
    # -- rates
    async def worker(k):
        for _ in range(k):
            await c.publish(TOPIC, PAYLOAD, qos=1)

    for _ in range(ROUNDS):
        M = 5000
        t0 = time.ticks_us()
        for _ in range(M):
            await c.publish(TOPIC, PAYLOAD)
        best("qos0 publishes/s", rate(M, t0))
        M = 2000
        t0 = time.ticks_us()
        for _ in range(M):
            await c.publish(TOPIC, PAYLOAD, qos=1)
        best("qos1 stop-and-wait/s", rate(M, t0))
        t0 = time.ticks_us()
        await asyncio.gather(*[worker(M // 20) for _ in range(20)])
        best("qos1 pipelined 20/s", rate(M // 20 * 20, t0))
        # The README's pipelining, from one task: begin_publish returns once the PUBLISH
        # is written (it waits only while the window of max_inflight=20 is full), then
        # every Delivery is awaited.
        t0 = time.ticks_us()
        ds = []
        for _ in range(M):
            ds.append(await c.begin_publish(TOPIC, PAYLOAD, qos=1))
        for d in ds:
            await d.wait()
        best("qos1 pipelined 20 in flight, one task/s", rate(M, t0))
        # A QoS 0 PUBLISH, then an awaited QoS 1: what a QoS 1 costs right after a QoS 0
        # (with Nagle left on, it would wait behind the QoS 0 for the broker's delayed ACK).
        M = 1000
        t0 = time.ticks_us()
        for _ in range(M):
            await c.publish(TOPIC, PAYLOAD)
            await c.publish(TOPIC, PAYLOAD, qos=1)
        best("qos0 then qos1 pairs/s", rate(M, t0))
    await c.disconnect()


def umqtt():
    from umqtt.simple import MQTTClient

    c = MQTTClient("ops-umqtt", HOST, PORT)
    c.connect()
    for q in (0, 1):
        n = N if q == 0 else 20
        for _ in range(3):
            c.publish(TOPIC, PAYLOAD, qos=q)
        a = start()
        for _ in range(n):
            c.publish(TOPIC, PAYLOAD, qos=q)
        out["publish qos%d" % q] = stop(a, n)
    M = 5000
    for _ in range(ROUNDS):
        t0 = time.ticks_us()
        for _ in range(M):
            c.publish(TOPIC, PAYLOAD)
        best("qos0 publishes/s", rate(M, t0))
    t0 = time.ticks_us()
    n = 0
    while time.ticks_diff(time.ticks_us(), t0) < 2000000:
        c.publish(TOPIC, PAYLOAD, qos=1)
        n += 1
    out["qos1 stop-and-wait/s"] = rate(n, t0)
    t0 = time.ticks_us()
    n = 0
    while time.ticks_diff(time.ticks_us(), t0) < 2000000:
        c.publish(TOPIC, PAYLOAD)
        c.publish(TOPIC, PAYLOAD, qos=1)
        n += 1
    out["qos0 then qos1 pairs/s"] = rate(n, t0)
    c.disconnect()


class _Machine:  # mqtt_as imports machine.unique_id
    @staticmethod
    def unique_id():
        return b"ops-as"


async def mqtt_as():
    import asyncio

    sys.modules["machine"] = _Machine
    from mqtt_as import MQTTClient, config

    config["server"] = HOST
    config["port"] = PORT
    config["queue_len"] = 0
    c = MQTTClient(config)
    await c.connect(quick=True)
    for q in (0, 1):
        n = N if q == 0 else 10
        for _ in range(3):
            await c.publish(TOPIC, PAYLOAD, qos=q)
        a = start()
        for _ in range(n):
            await c.publish(TOPIC, PAYLOAD, qos=q)
        out["publish qos%d" % q] = stop(a, n)
    a = start()
    await asyncio.sleep_ms(0)
    base = gc.mem_alloc() - a
    gc.enable()
    a = start()
    await asyncio.sleep(1)
    out["idle B/s"] = max(0, round(gc.mem_alloc() - a - base))
    gc.enable()
    M = 2000
    for _ in range(ROUNDS):
        t0 = time.ticks_us()
        for _ in range(M):
            await c.publish(TOPIC, PAYLOAD)
        best("qos0 publishes/s", rate(M, t0))
    for label, k in (("qos1 stop-and-wait/s", 1), ("qos1 pipelined 20/s", 20)):
        n = [0]
        t0 = time.ticks_us()

        async def worker(n, t0):
            while time.ticks_diff(time.ticks_us(), t0) < 2000000:
                await c.publish(TOPIC, PAYLOAD, qos=1)
                n[0] += 1

        await asyncio.gather(*[worker(n, t0) for _ in range(k)])
        out[label] = rate(n[0], t0)
    n = 0
    t0 = time.ticks_us()
    while time.ticks_diff(time.ticks_us(), t0) < 2000000:
        await c.publish(TOPIC, PAYLOAD)
        await c.publish(TOPIC, PAYLOAD, qos=1)
        n += 1
    out["qos0 then qos1 pairs/s"] = rate(n, t0)
    c.close()


if LIB == "umqtt":
    umqtt()
else:
    import asyncio

    asyncio.run(ours() if LIB == "ours" else mqtt_as())
print(json.dumps(out))
