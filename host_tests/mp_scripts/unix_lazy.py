# Which mqtt_v5 modules a device's everyday path loads (host_tests/test_unix_lazy.py):
# mutual-TLS connect, subscribe QoS 1, publish 64 B QoS 1, receive it, disconnect -- the
# bench's heap scenario. Then the cold paths the client loads on first use (status, repr,
# unsubscribe, the messages() iterator), to show they work from where they are loaded.
# argv: host port ca.der cert.der key.der. Prints one JSON report as its last line.
import asyncio
import json
import sys

from mqtt_v5 import ConnectOptions, MqttClient, TlsConfig


def loaded(package="mqtt_v5"):
    return sorted(k for k in sys.modules if k == package or k.startswith(package + "."))


# asyncio's and mqtt_v5's modules loaded at the connection's first write, which runs the
# TLS handshake.
at_handshake = []


def _patch_first_write():
    from mqtt_v5 import transport

    write = transport.StreamTransport.write

    def first_write(self, buf):
        if not at_handshake:
            at_handshake.append(loaded("asyncio"))
            at_handshake.append(loaded())
        return write(self, buf)

    transport.StreamTransport.write = first_write


async def main(host, port, ca, cert, key):
    o = ConnectOptions("lazy-%d" % port, keep_alive=60)
    o.tls = TlsConfig(ca=ca, cert=cert, key=key, server_hostname="localhost")
    c = MqttClient(o)
    url = "mqtts://%s:%d" % (host, port)
    got = []
    _patch_first_write()
    await c.connect(url)
    ev = asyncio.Event()

    def on(msg):
        got.append(len(msg.payload))
        ev.set()

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
    return {"got": got, "everyday": everyday, "cold": cold, "after": loaded(),
            "at_handshake": at_handshake[0], "mqtt_at_handshake": at_handshake[1]}


a = sys.argv[1:]
print(json.dumps(asyncio.run(main(a[0], int(a[1]), a[2], a[3], a[4]))))
