# Which mqtt_v5 modules a device's everyday path loads (host_tests/test_unix_lazy.py):
# mutual-TLS connect, subscribe QoS 1, publish 64 B QoS 1, receive it, disconnect -- the
# bench's heap scenario. Then the cold paths the client loads on first use (status, repr,
# unsubscribe, the messages() iterator), to show they work from where they are loaded.
# argv: host port ca.der cert.der key.der. Prints one JSON report as its last line.
import asyncio
import json
import sys

from mqtt_v5 import ConnectOptions, MqttClient, TlsConfig


def loaded():
    return sorted(k for k in sys.modules if k == "mqtt_v5" or k.startswith("mqtt_v5."))


async def main(host, port, ca, cert, key):
    o = ConnectOptions("lazy-%d" % port, keep_alive=60)
    o.tls = TlsConfig(ca=ca, cert=cert, key=key, server_hostname="localhost")
    c = MqttClient(o)
    url = "mqtts://%s:%d" % (host, port)
    got = []
    ev = asyncio.Event()

    def on(msg):
        got.append(len(msg.payload))
        ev.set()

    await c.connect(url)
    await c.subscribe("lazy/t", on, qos=1)
    await c.publish("lazy/t", bytes(64), qos=1)
    await asyncio.wait_for(ev.wait(), 10)
    await c.disconnect()
    everyday = loaded()
    # The cold paths, loaded now.
    cold = {"status": c.status()["state"], "repr": repr(c).split(" ")[0]}
    event = await c.connect(url)
    cold["event"] = repr(event)
    it = c.messages()
    await c.subscribe("lazy/q", qos=1)
    await c.publish("lazy/q", b"q", qos=1)
    msg = await asyncio.wait_for(it.__anext__(), 10)
    cold["iterated"] = [msg.topic, msg.payload.decode()]
    cold["message_repr"] = repr(msg)
    cold["unsubscribe"] = await c.unsubscribe("lazy/q")
    await c.disconnect()
    return {"got": got, "everyday": everyday, "cold": cold, "after": loaded()}


a = sys.argv[1:]
print(json.dumps(asyncio.run(main(a[0], int(a[1]), a[2], a[3], a[4]))))
