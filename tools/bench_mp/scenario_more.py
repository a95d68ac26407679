# More figures for mqtt_v5 beside tools/bench_mp/scenario.py's (a script of their own, so
# the modes' code does not count in the plain scenario's heap):
#   micropython scenario_more.py MODE PORT CA_DER CERT_DER KEY_DER [PAD]
# MODE again: scenario.py's "ours", then connect again and publish QoS 1 (a device's
#   reconnect: the second TLS session has to find room in a heap the first one used);
#   prints {"ok": true} when it got through.
# MODE lost: as "again", but once connected again the broker drops the link (a malformed
#   packet written under the client): the client reconnects by itself (loading what a
#   lost link needs, as a device's first outage does; a disconnect() and connect() loads
#   none of that), then publishes QoS 1.
# MODE steps: the same as "ours", reporting the heap kept after each step
#   ({"steps": [[step, bytes], ...]}, gc.collect() before each figure: run it with room),
#   and at the end MicroPython's qstr_info() line (the names interned at run time).
import gc
import json
import sys

MODE, PORT, CA, CERT, KEY = sys.argv[1:6]
PORT = int(PORT)
# PAD (optional): bytes this program keeps before it imports anything, for a layout other
# than this program's own (tools/bench_unix.py LOST_PADS)
PADDING = bytearray(int(sys.argv[6])) if len(sys.argv) > 6 else None
URL = "mqtts://127.0.0.1:%d" % PORT
TOPIC = "bench/heap"
PAYLOAD = bytes(64)
STEPS = []


def step(name):
    if MODE == "steps":
        gc.collect()
        STEPS.append([name, gc.mem_alloc()])


def run():
    step("start")
    import asyncio

    step("import asyncio")
    from mqtt_v5 import ConnectOptions, MqttClient, TlsConfig

    step("import line")
    got = []

    async def main():
        o = ConnectOptions("heap-ours", keep_alive=60)
        if MODE == "lost":
            from mqtt_v5 import ReconnectConfig

            o.reconnect_config = ReconnectConfig(initial_delay=0.05, jitter=0)
        o.tls = TlsConfig(ca=CA, cert=CERT, key=KEY, server_hostname="localhost")
        c = MqttClient(o)
        step("MqttClient()")
        await c.connect(URL)
        step("connected")
        ev = asyncio.Event()

        def on(msg):
            got.append(len(msg.payload))
            ev.set()

        await c.subscribe(TOPIC, on, qos=1)
        await c.publish(TOPIC, PAYLOAD, qos=1)
        await asyncio.wait_for(ev.wait(), 5)
        step("subscribed, published, received")
        await c.disconnect()
        step("disconnected")
        if MODE == "lost":
            up = asyncio.Event()
            c.on_connection_event(lambda e: up.set() if hasattr(e, "session_present") else 0)
            await c.connect(URL)
            up.clear()
            await c._transport.write(b"\x00\x00")  # packet type 0: the broker drops us
            await asyncio.wait_for(up.wait(), 10)  # reconnected by the client itself
            await c.publish(TOPIC, PAYLOAD, qos=1)
            await c.disconnect()
        if MODE == "again":
            await c.connect(URL)
            step("connected again")
            await c.publish(TOPIC, PAYLOAD, qos=1)
            await c.disconnect()
        return got[0] == 64

    return asyncio.run(main())


try:
    r = {"ok": run()}
except MemoryError as e:
    r = {"ok": False, "error": "MemoryError %s" % e}
except Exception as e:
    r = {"ok": False, "error": "%s: %s" % (type(e).__name__, e)}
if STEPS:
    r["steps"] = STEPS
    import micropython

    micropython.qstr_info()
print(json.dumps(r))
