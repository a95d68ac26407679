# Garbage (bytes allocated, collector off) per operation of MqttClient over a real socket
# to Mosquitto, beside asyncio's own cost of one socket wake-up measured in the same process.
# Usage: micropython driver_garbage.py PORT [N]
# Prints, as its last line, a JSON object of bytes per operation:
#   floor   one task woken by its socket through asyncio's Stream (asyncio's own cost)
#   qos0 / qos0_str / qos0_props / qos0_props_bytes   an awaited QoS 0 publish (bytes topic
#                 and payload / str topic / with a str user property / given as bytes)
#   qos1    an awaited QoS 1 publish: written, then the reader woken by PUBACK, which
#           completes the publisher's wait
#   recv0 / recv1 / recv1_props   a message received (QoS 0 / QoS 1, acknowledged / with a
#                 user property), plain callback
#   idle    connected and idle, over one second
# The harness's own costs (the coroutine of each measured step, the sleeps) are measured
# the same way with nothing in them and taken off.
import asyncio
import gc
import json
import socket
import sys

from mqtt_v5 import ConnectOptions, MqttClient, PublishOptions

PORT = int(sys.argv[1])
N = int(sys.argv[2]) if len(sys.argv) > 2 else 40


def raw_connect(client_id):
    """A blocking MQTT connection outside asyncio (its costs are not the client's)."""
    s = socket.socket()
    s.connect(socket.getaddrinfo("127.0.0.1", PORT)[0][-1])
    cid = client_id.encode()
    body = b"\x00\x04MQTT\x05\x02\x00\x3c\x00" + bytes([0, len(cid)]) + cid
    s.write(bytes([0x10, len(body)]) + body)
    s.read(5)  # CONNACK with no properties: 20 03 00 00 00
    return s


def publish_bytes(topic, payload, qos, pid=1, props=b""):
    t = topic.encode()
    vh = (bytes([0, len(t)]) + t + (bytes([pid >> 8, pid & 255]) if qos else b"")
          + bytes([len(props)]) + props)
    body = vh + payload
    return bytes([0x30 | (qos << 1), len(body)]) + body


async def floor():
    """One socket wake-up through asyncio's Stream: PINGREQ written straight to the
    socket, PINGRESP awaited with stream.readinto (the loop wakes the task once)."""
    s = raw_connect("garbage-floor")
    s.setblocking(False)
    st = asyncio.StreamReader(s)
    mv = memoryview(bytearray(64))
    ping = b"\xc0\x00"
    for _ in range(5):
        s.write(ping)
        await st.readinto(mv)
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    for _ in range(N):
        s.write(ping)
        await st.readinto(mv)
    b = gc.mem_alloc()
    gc.enable()
    s.close()
    return (b - a) // N


def begin():
    gc.collect()
    gc.disable()
    return gc.mem_alloc()


def end(a):
    b = gc.mem_alloc()
    gc.enable()
    return (b - a) // N


async def main():
    out = {"floor": await floor()}
    got = [0]

    def on_msg(m):
        got[0] += 1

    c = MqttClient(ConnectOptions("garbage-client", keep_alive=60))
    await c.connect("mqtt://127.0.0.1:%d" % PORT)
    base = "garbage/%d" % PORT
    await c.subscribe(base + "/in/#", on_msg, qos=1)
    tb = (base + "/out").encode()
    ts = base + "/out"
    payload = b"x" * 64
    props = PublishOptions(user_properties=[("k", "v")])
    bprops = PublishOptions(user_properties=[(b"k", b"v")])

    # Each loop in one coroutine: no harness coroutine per step.
    for _ in range(5):
        await c.publish(tb, payload, 0)
        await c.publish(ts, payload, 0)
        await c.publish(tb, payload, 0, False, props)
        await c.publish(tb, payload, 1)
    a = begin()
    for _ in range(N):
        await c.publish(tb, payload, 0)
    out["qos0"] = end(a)
    a = begin()
    for _ in range(N):
        await c.publish(ts, payload, 0)
    out["qos0_str"] = end(a)
    a = begin()
    for _ in range(N):
        await c.publish(tb, payload, 0, False, props)
    out["qos0_props"] = end(a)
    for _ in range(5):
        await c.publish(tb, payload, 0, False, bprops)
    a = begin()
    for _ in range(N):
        await c.publish(tb, payload, 0, False, bprops)
    out["qos0_props_bytes"] = end(a)
    a = begin()
    for _ in range(N):
        await c.publish(tb, payload, 1)
    out["qos1"] = end(a)

    # Received: a raw socket feeds the broker (outside asyncio); the message reaches the
    # client while this task sleeps. The sleep is measured alone and taken off.
    feeder = raw_connect("garbage-feeder")
    msg0 = publish_bytes(base + "/in/x", payload, 0)
    msg1 = publish_bytes(base + "/in/x", payload, 1)
    # with a user property ("k", "v")
    msg1p = publish_bytes(base + "/in/x", payload, 1, 1, b"\x26\x00\x01k\x00\x01v")

    async def recv(msg, qos):
        for _ in range(3):
            got[0] = 0
            feeder.write(msg)
            if qos:
                feeder.read(4)  # PUBACK
            while not got[0]:
                await asyncio.sleep_ms(1)
        # the waiting alone: a timed sleep of 3 ms, N times
        a = begin()
        for _ in range(N):
            await asyncio.sleep_ms(3)
        sleep_cost = end(a)
        total = 0
        for _ in range(N):
            got[0] = 0
            feeder.write(msg)
            if qos:
                feeder.read(4)
            gc.collect()
            gc.disable()
            a = gc.mem_alloc()
            await asyncio.sleep_ms(3)
            while not got[0]:
                await asyncio.sleep_ms(3)
            b = gc.mem_alloc()
            gc.enable()
            total += b - a
        return total // N - sleep_cost

    out["recv0"] = await recv(msg0, 0)
    out["recv1"] = await recv(msg1, 1)
    out["recv1_props"] = await recv(msg1p, 1)
    feeder.close()
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    await asyncio.sleep_ms(1000)
    b = gc.mem_alloc()
    gc.enable()
    out["idle"] = b - a
    await c.disconnect()
    print(json.dumps(out))


asyncio.run(main())
