# Garbage (bytes allocated, gc disabled) per operation of MqttClient over a real socket to
# Mosquitto, beside asyncio's own cost of one socket wake-up measured in the same process.
# Usage: micropython driver_garbage.py PORT [N]
# Prints {"floor": B, "qos0": B, "qos1": B, "recv0": B, "recv1": B, "idle": B, ...}: bytes per
# operation (idle: bytes over the idle period), as the last line.
import asyncio
import gc
import json
import sys

from mqtt_v5 import ConnectOptions, MqttClient

PORT = int(sys.argv[1])
N = int(sys.argv[2]) if len(sys.argv) > 2 else 50
TOPIC = "garbage/%d" % PORT


def alloc():
    return gc.mem_alloc()


async def floor():
    """One socket wake-up through asyncio's Stream: a PINGREQ written straight to the socket,
    its PINGRESP awaited with stream.readinto (the loop wakes the task once)."""
    import socket

    ai = socket.getaddrinfo("127.0.0.1", PORT)[0]
    s = socket.socket()
    s.connect(ai[-1])
    s.write(b"\x10\x0d\x00\x04MQTT\x05\x02\x00\x3c\x00\x00\x00")  # CONNECT, empty client id
    s.setblocking(False)
    st = asyncio.StreamReader(s)
    buf = bytearray(64)
    mv = memoryview(buf)
    await st.readinto(mv)  # CONNACK
    ping = b"\xc0\x00"
    for _ in range(5):
        s.write(ping)
        await st.readinto(mv)
    gc.collect()
    gc.disable()
    a = alloc()
    for _ in range(N):
        s.write(ping)
        await st.readinto(mv)
    b = alloc()
    gc.enable()
    s.close()
    return (b - a) // N


async def main():
    out = {"floor": await floor()}
    print(out)
    got = [0]

    def on_msg(m):
        got[0] += 1

    c = MqttClient(ConnectOptions(keep_alive=60, reconnect_config=None))
    await c.connect("mqtt://127.0.0.1:%d" % PORT)
    await c.subscribe(TOPIC + "/in/#", on_msg, qos=1)
    topic = TOPIC + "/out"
    payload = b"x" * 64
    # A second client feeds messages in (its own garbage is not counted: its
    # publishes are made before the measured window).
    feeder = MqttClient(ConnectOptions(keep_alive=60))
    await feeder.connect("mqtt://127.0.0.1:%d" % PORT)

    async def measure(what, op):
        for _ in range(5):
            await op()
        gc.collect()
        gc.disable()
        a = alloc()
        for _ in range(N):
            await op()
        b = alloc()
        gc.enable()
        out[what] = (b - a) // N

    async def pub0():
        await c.publish(topic, payload, 0)

    async def pub1():
        await c.publish(topic, payload, 1)

    await measure("qos0", pub0)
    await measure("qos1", pub1)
    print(out)

    async def recv(qos, what):
        # Messages arrive while this task sleeps; the cost of the sleep itself is
        # measured apart and taken off.
        for _ in range(3):
            got[0] = 0
            await feeder.publish(TOPIC + "/in/x", payload, qos)
            while not got[0]:
                await asyncio.sleep_ms(1)
        total = 0
        n = 0
        for _ in range(N):
            got[0] = 0
            await feeder.publish(TOPIC + "/in/x", payload, qos)
            await asyncio.sleep_ms(20)
            gc.collect()
            gc.disable()
            a = alloc()
            await asyncio.sleep_ms(20)  # the message arrives in here (sent 20 ms ago)
            b = alloc()
            gc.enable()
            total += b - a
            n += 1
        out[what] = total // n

    # the feeder's message reaches the broker and comes back while we wait: to keep the
    # feeder out of the window it publishes, then we wait for delivery inside the window.
    async def recv_in_window(qos, what):
        print("recv", qos)
        for _ in range(3):
            got[0] = 0
            await feeder.publish(TOPIC + "/in/x", payload, qos)
            while not got[0]:
                await asyncio.sleep_ms(1)
        # cost of the waiting itself, with no message
        gc.collect()
        gc.disable()
        a = alloc()
        for _ in range(N):
            await asyncio.sleep_ms(2)
        b = alloc()
        gc.enable()
        wait_cost = (b - a) // N
        print("wc", wait_cost)
        total = 0
        for _ in range(N):
            got[0] = 0
            # the feeder writes now; delivery to us needs the loop, which only
            # runs in the measured sleep below
            feeder.publish(TOPIC + "/in/x", payload, 0 if qos == 0 else 1)
            gc.collect()
            gc.disable()
            a = alloc()
            await asyncio.sleep_ms(2)
            while not got[0]:
                await asyncio.sleep_ms(2)
            b = alloc()
            gc.enable()
            total += b - a
        out[what] = total // N - wait_cost
        out[what + "_sleep"] = wait_cost

    await recv_in_window(0, "recv0")
    await recv_in_window(1, "recv1")
    # idle: connected, nothing happening, over 1 s of sleeping (the sleep's own cost is
    # asyncio's: one timed wake-up)
    gc.collect()
    gc.disable()
    a = alloc()
    await asyncio.sleep_ms(1000)
    b = alloc()
    gc.enable()
    out["idle"] = b - a
    await feeder.disconnect()
    await c.disconnect()
    print(json.dumps(out))


asyncio.run(main())
